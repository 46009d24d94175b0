"""Published structures that fit a run's template, scored under its objective, for the picture and the record."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config
from ..genotype import GenotypeError, load_genotype
from .budgets import record_point

PUBLISHED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "published"


def reference_points(cfg: Config, folder: str | os.PathLike | None = PUBLISHED_DIR) -> tuple[list[dict], list[dict]]:
    """Published structures that fit the config's template, evaluated under its objective.

    A structure fits when its blocks, strides, head, stem stride and image size equal the
    template's (otherwise its objective is not comparable). A missing folder gives no points.

    Args:
        cfg: the run configuration.
        folder: the folder of structure files (TinyNAS literals, genotype JSON or text form).

    Returns:
        (fitting points ``{name, text, objective, macs, params, rho, layers}``, skipped ``{name, reason}``).
    """
    if folder is None or not Path(folder).is_dir():
        return [], []
    t = cfg.template
    points, skipped = [], []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix not in (".txt", ".json") or not path.is_file():
            continue
        try:
            g = load_genotype(path)
        except (GenotypeError, ValueError, OSError) as exc:
            skipped.append({"name": path.stem, "reason": f"unreadable ({str(exc).splitlines()[0]})"})
            continue
        mine = (t.blocks, t.strides, t.head, t.stem_stride, t.image_size)
        theirs = (g.blocks, tuple(st.s for st in g.stages), None if g.head is None else g.head.out, g.stem.s,
                  g.image_size)
        if mine != theirs:
            names = ("blocks", "strides", "head", "stem stride", "image size")
            diff = [f"{n} {_short(b)} ≠ {_short(a)}" for n, a, b in zip(names, mine, theirs) if a != b]
            skipped.append({"name": path.stem, "reason": "does not fit the template: " + "; ".join(diff)})
            continue
        points.append({"name": path.stem, **record_point(g, cfg)})
    return points, skipped


def _short(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
