"""Weights that travel: ``model.safetensors`` + ``config.json`` in the Hugging Face Hub folder layout.

A weights folder holds the tensors (safetensors: no pickle, so loading never runs code) and a
``config.json`` that timm reads as is (``architecture``, ``num_classes``, ``num_features``,
``global_pool``, ``model_args`` and ``pretrained_cfg``, the preprocessing), plus a ``deepmad_evo``
section with the genotype. So the same folder loads with ``deepmad_evo.load_model(DIR)``,
``build_model(genotype, weights=DIR)``, ``timm.create_model("local-dir:DIR")`` (after
``import deepmad_evo.timm``) or ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=DIR + "/model.safetensors"))``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .genotype import Genotype, GenotypeError
from .io import atomic_path, atomic_write_text

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "deepmad-evo/weights/1"
ARCHITECTURE = "deepmad"  # the timm entry point that takes any genotype (deepmad_evo.timm)
MAX_CONFIG_BYTES = 1 << 20


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ValueError("weights: safetensors is not installed; install the extra: pip install 'deepmad-evo[safetensors]'") \
            from None
    return safetensors.torch


@dataclass(frozen=True)
class LoadReport:
    """What ``load_weights`` did: the weights file and the keys it left at their fresh initialisation."""

    path: Path
    reinitialised: tuple[str, ...]


def save_weights(model: nn.Module, directory: str | os.PathLike, *, preprocessing: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each atomically).

    Args:
        model: a ``DeepMADNet`` (unwrapped from DDP / torch.compile).
        directory: the weights folder (created).
        preprocessing: overrides of the model's ``pretrained_cfg`` (e.g. the training recipe's
            ``mean``, ``std``, ``crop_pct``, ``interpolation``, ``input_size``).
        extra: JSON-able facts stored under ``config.json["deepmad_evo"]`` (e.g. the dataset, metrics).

    Returns:
        The folder.
    """
    genotype = getattr(model, "genotype", None)
    if not isinstance(genotype, Genotype) or getattr(model, "features_only", False):
        raise ValueError("weights: expected a classification DeepMADNet (from build_model) to save")
    st = _safetensors()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    cfg = dict(getattr(model, "pretrained_cfg", {}))
    cfg.update(preprocessing or {})
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
    cfg["num_classes"] = model.num_classes
    cfg["input_size"] = [genotype.in_channels, *cfg.get("input_size", [0, genotype.image_size, genotype.image_size])[1:]]
    config = {
        "architecture": ARCHITECTURE,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": model.global_pool,
        "model_args": {"genotype": genotype.to_text()},
        "pretrained_cfg": cfg,
        "deepmad_evo": {**dict(extra or {}), "format": FORMAT, "genotype": genotype.to_dict()},
    }
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        st.save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    return directory


def weights_file(path: str | os.PathLike) -> Path:
    """The ``.safetensors`` file a path names: the file itself, or ``model.safetensors`` in a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILE
        if not path.is_file():
            raise ValueError(f"weights: {str(path.parent)!r} holds no {WEIGHTS_FILE}; expected a weights folder "
                             "written by training (model.safetensors + config.json)")
        return path
    if path.suffix != ".safetensors":
        raise ValueError(f"weights: expected a folder holding {WEIGHTS_FILE} or a .safetensors file, got {str(path)!r}"
                         + (" (pickled .pt files are not loaded: they can run code)" if path.suffix in (".pt", ".pth")
                            else ""))
    if not path.is_file():
        raise ValueError(f"weights: no such file {str(path)!r}")
    return path


def read_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` beside the weights (or in the folder); raises a one-line ValueError if unreadable."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"weights: {str(path)!r} does not exist; expected a weights folder (model.safetensors + "
                         "config.json)")
    file = path / CONFIG_FILE if path.is_dir() else path.parent / CONFIG_FILE
    if not file.is_file():
        raise ValueError(f"weights: no {CONFIG_FILE} at {str(file)!r}; expected the folder written by training")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"weights: {str(file)!r} is larger than {MAX_CONFIG_BYTES} bytes; expected a small JSON file")
    try:
        config = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"weights: {str(file)!r} is not valid JSON ({exc})") from None
    own = config.get("deepmad_evo") if isinstance(config, dict) else None
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise ValueError(f"weights: {str(file)!r} is not a {FORMAT} config (no deepmad_evo.format)")
    return config


def config_genotype(config: Mapping) -> Genotype:
    """The genotype recorded in a weights ``config.json``."""
    try:
        return Genotype.from_dict(config["deepmad_evo"]["genotype"])
    except (KeyError, TypeError, GenotypeError) as exc:
        raise ValueError(f"weights: config.json holds no valid genotype ({exc})") from None


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights folder or ``.safetensors`` file, on CPU (safetensors: no code runs)."""
    file = weights_file(path)
    st = _safetensors()
    try:
        return st.load_file(str(file), device="cpu")
    except Exception as exc:  # SafetensorError, OSError: a corrupt or truncated file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"weights: {str(file)!r} is not a readable safetensors file ({reason[:120]})") from None


def load_weights(model: nn.Module, path: str | os.PathLike, *, classifier: str = "classifier") -> LoadReport:
    """Load a weights folder / ``.safetensors`` file into ``model`` in place.

    Every tensor of the model must be in the file with the same shape, except the classifier when
    its width differs (fine-tuning on another number of classes: it keeps its fresh initialisation).
    A ``features_only`` backbone takes the tensors of the modules it has and ignores the rest.

    Raises:
        ValueError: one line naming the first missing or mismatched tensor.
    """
    file = weights_file(path)
    state = load_state_dict(file)
    own = model.state_dict()
    reinit = []
    for key, tensor in own.items():
        if key not in state:
            raise ValueError(f"weights: {str(file)!r} lacks {key}; expected weights of the same network")
        if state[key].shape != tensor.shape:
            if key.startswith(classifier + "."):
                reinit.append(key)
                continue
            raise ValueError(f"weights: {str(file)!r} holds another network ({key}: shape {tuple(state[key].shape)} "
                             f"in the file, {tuple(tensor.shape)} in this model)")
    extra = sorted(set(state) - set(own))
    if extra and not getattr(model, "features_only", False) and not (
            all(k.startswith(classifier + ".") for k in extra) and getattr(model, "num_classes", 1) == 0):
        raise ValueError(f"weights: {str(file)!r} holds another network ({extra[0]} is not in this model)")
    model.load_state_dict({k: state[k] for k in own if k not in reinit}, strict=False)
    return LoadReport(file, tuple(reinit))
