"""Published structures that fit a run's template, scored under its objective, for the picture and the record."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config
from ..genotype import GenotypeError, load_genotype
from ..models import published_index
from ..resources import published_dir
from .budgets import record_point

PUBLISHED_DIR = published_dir()


def reference_points(cfg: Config, folder: str | os.PathLike | None = PUBLISHED_DIR) -> tuple[list[dict], list[dict]]:
    """Published structures that fit the config's template, evaluated under its objective.

    A structure fits when its blocks, strides, head, stem stride and image size equal the
    template's (otherwise its objective is not comparable). A missing folder gives no points.

    Args:
        cfg: the run configuration.
        folder: the folder of structure files (TinyNAS literals, genotype JSON or text form); by default
            the authors' published DeepMAD networks shipped with the package, named as in the zoo.

    Returns:
        (fitting points ``{name, text, objective, macs, params, rho, layers}``, skipped ``{name, reason}``).
    """
    if folder is None or not Path(folder).is_dir():
        return [], []
    t = cfg.template
    points, skipped = [], []
    for name, path, image_size in _structure_files(Path(folder)):
        try:
            g = load_genotype(path, image_size=image_size)
        except (GenotypeError, ValueError, OSError) as exc:
            skipped.append({"name": name, "reason": f"unreadable ({str(exc).splitlines()[0]})"})
            continue
        mine = (t.blocks, t.strides, t.head, t.stem_stride, t.image_size)
        theirs = (g.blocks, tuple(st.s for st in g.stages), None if g.head is None else g.head.out, g.stem.s,
                  g.image_size)
        if mine != theirs:
            names = ("blocks", "strides", "head", "stem stride", "image size")
            diff = [f"{n} {_short(b)} ≠ {_short(a)}" for n, a, b in zip(names, mine, theirs) if a != b]
            skipped.append({"name": name, "reason": "does not fit the template: " + "; ".join(diff)})
            continue
        points.append({"name": name, **record_point(g, cfg)})
    return points, skipped


def _structure_files(folder: Path):
    """(name, path, image size or None) per structure file; the package's own folder by zoo name and image size."""
    if folder.resolve() == PUBLISHED_DIR.resolve():
        for name, entry in sorted(published_index().items()):
            yield name, folder / entry["file"], entry["image_size"]
        return
    for path in sorted(folder.iterdir()):
        if path.suffix in (".txt", ".json") and path.is_file():
            yield path.stem, path, None


def _short(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
