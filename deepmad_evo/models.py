"""Registry of zoo networks: genotypes solved by our own search (``deepmad_evo/zoo/``) and the authors'
published DeepMAD networks (``deepmad_evo/zoo/published/``, names ``deepmad-*-published``).

``zoo/index.json`` records, per preset, how its genotype was found (the resolved config, seed,
objective, costs verified on the live module); ``benchmarks/solve_zoo.py`` regenerates both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .genotype import Genotype, GenotypeError, load_design, load_genotype
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


def genotype_source(source: str | os.PathLike) -> str | os.PathLike:
    """The file a GENOTYPE argument names: a run directory stands for its ``genotype.json``.

    Raises:
        GenotypeError: for a directory without ``genotype.json``.
    """
    path = Path(source)
    if path.is_dir():
        if (path / "genotype.json").is_file():
            return path / "genotype.json"
        raise GenotypeError(f"genotype: {str(source)!r} is a directory without genotype.json; expected a run "
                            "directory, a genotype file, a text form or a zoo name")
    return source


def resolve_genotype(source: str | os.PathLike, image_size: int | None = None) -> Genotype:
    """A genotype from a run directory, a file, a text form or a zoo name (in that order).

    Raises:
        GenotypeError: naming the source when it is none of these.
    """
    source = genotype_source(source)
    try:
        return load_genotype(source, image_size=image_size)
    except GenotypeError as exc:
        if str(source) not in list_models() or Path(source).exists():
            if "neither a readable file" in str(exc):
                raise GenotypeError(f"genotype: {str(source)!r} is neither a run directory, a readable file, a genotype "
                                    f"text form nor a zoo model ({', '.join(list_models())})") from None
            raise
    g = get_genotype(str(source))
    return g if image_size is None else Genotype(g.stem, g.stages, g.head, image_size, g.in_channels, g.num_classes)


def recorded_design(source: str | os.PathLike) -> dict | None:
    """How a GENOTYPE argument was designed, when that is known: ``{"convention", "macs", "params", "rho",
    "alpha", "beta", "preset"}`` from a search's ``genotype.json`` (or its run directory), a zoo entry's
    config, or a published network's budgets; ``None`` otherwise.
    """
    try:
        path = Path(genotype_source(source))
    except GenotypeError:
        return None
    if path.is_file():
        return load_design(path)
    name = str(source)
    if name in zoo_index():
        cfg = zoo_index()[name]["config"]
        b, o = cfg["budget"], cfg["objective"]
        return {"preset": cfg["name"], "convention": o["convention"], "macs": b["macs"], "params": b["params"],
                "rho": b["rho"], "alpha": o["alpha"], "beta": o["beta"]}
    if name in published_index():
        b = published_index()[name]["budget"]
        return {"origin": "the authors' search config", "convention": b["convention"], "macs": b["macs"],
                "params": b["params"], "rho": b["rho"]}
    return None
