"""Registry of zoo networks: genotypes solved by our own search (``deepmad_evo/zoo/``) and the authors'
published DeepMAD networks (``deepmad_evo/zoo/published/``, names ``deepmad-*-published``).

``zoo/index.json`` records, per preset, how its genotype was found (the resolved config, seed,
objective, costs verified on the live module); ``benchmarks/solve_zoo.py`` regenerates both.
"""

from __future__ import annotations

import json
from pathlib import Path

from .genotype import Genotype, GenotypeError, load_genotype
from .resources import published_dir, zoo_dir

ZOO_DIR = zoo_dir()
INDEX = ZOO_DIR / "index.json"


def zoo_index() -> dict:
    """The registry: ``{name: {"file", "config", "seed", "objective", ...}}`` (empty when no zoo is shipped)."""
    if not INDEX.is_file():
        return {}
    return json.loads(INDEX.read_text())["models"]


def published_index() -> dict:
    """The authors' published DeepMAD networks: ``{name: {"file", "image_size", "budget", ...}}``."""
    path = zoo_dir() / "published.json"
    return json.loads(path.read_text())["models"] if path.is_file() else {}


def list_models() -> list[str]:
    """Names of the preset networks (our search's) and of the published ones (``deepmad-*-published``), sorted."""
    return sorted({*zoo_index(), *published_index()})


def get_genotype(name: str) -> Genotype:
    """The genotype of a zoo network (no torch needed).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    index = zoo_index()
    if name in index:
        return load_genotype(ZOO_DIR / index[name]["file"])
    published = published_index()
    if name in published:
        entry = published[name]
        return load_genotype(published_dir() / entry["file"], image_size=entry["image_size"])
    raise ValueError(f"model: expected one of {', '.join(list_models()) or '(none shipped)'}, got {name!r}")


def get_model(name: str, **kwargs):
    """Build a preset network.

    Args:
        name: a name from ``list_models()`` (the preset it was solved for, e.g. ``r50``, ``mb-29m``).
        **kwargs: passed to ``build_model`` (``num_classes``, ``features_only``, ``drop_path_rate``, …).

    Returns:
        The ``nn.Module``.
    """
    from .model import build_model

    return build_model(get_genotype(name), **kwargs)


def resolve_genotype(source: str, image_size: int | None = None) -> Genotype:
    """A genotype from a path, a text form or a zoo name (in that order).

    Raises:
        GenotypeError: naming the source when it is none of these.
    """
    try:
        return load_genotype(source, image_size=image_size)
    except GenotypeError as exc:
        if str(source) not in list_models() or Path(source).exists():
            if "neither a readable file" in str(exc):
                raise GenotypeError(f"{exc} nor a zoo model ({', '.join(list_models())})") from None
            raise
    g = get_genotype(str(source))
    return g if image_size is None else Genotype(g.stem, g.stages, g.head, image_size, g.in_channels, g.num_classes)
