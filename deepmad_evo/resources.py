"""Where the data shipped with the package lives, in a wheel, an editable install and a source checkout alike.

The presets and training recipes sit at the top of the repository (``configs/``, ``configs/train/``);
a wheel carries them inside the package as ``deepmad_evo/presets``. The zoo and the published
reference structures are ordinary package data (``deepmad_evo/zoo/``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_PACKAGE = Path(str(resources.files("deepmad_evo")))


def preset_dir() -> Path:
    """The folder of search presets (``*.toml``): ``deepmad_evo/presets`` when installed, else ``configs/``."""
    shipped = _PACKAGE / "presets"
    return shipped if shipped.is_dir() else _PACKAGE.parent / "configs"


def recipe_dir() -> Path:
    """The folder of training recipes (``configs/train``)."""
    return preset_dir() / "train"


def zoo_dir() -> Path:
    """Genotypes found by our own search, one per preset, with ``index.json``."""
    return _PACKAGE / "zoo"


def published_dir() -> Path:
    """The authors' published DeepMAD structures, verbatim, with ``index.json`` and a README."""
    return zoo_dir() / "published"
