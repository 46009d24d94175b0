"""Checkpoints: atomic save, load with a clear error, compatibility checks, RNG states for exact resumption."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..io import atomic_path
from .config import CHECKPOINT_FORMAT, TrainConfig
from .runtime import Runtime

# ------------------------------------------------------------------------------------- checkpoints
def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, then an atomic rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by ``train`` (tensors and plain data only: weights_only loading).

    Raises:
        ValueError: one line naming the file when it is missing, corrupt, truncated or foreign.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {str(path)!r}; train without --resume to start this run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file becomes the same clear message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint: {str(path)!r} is corrupt or truncated ({reason[:120]}); "
                         "delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {str(path)!r} is not a {CHECKPOINT_FORMAT} file")
    for key, kind in _CHECKPOINT_KEYS.items():
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"checkpoint: {str(path)!r} is damaged ({key} is "
                             f"{'missing' if key not in state else type(value).__name__}, expected "
                             f"{kind.__name__}); delete it to start over")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        raise ValueError(f"checkpoint: {str(path)!r} is damaged (model holds non-tensors); delete it to start over")
    return state


# What ``check_compatible`` and the resume read, with their types (a damaged file is refused up front).
_CHECKPOINT_KEYS = {"epoch": int, "steps_per_epoch": int, "world_size": int, "recipe": dict, "model": dict,
                    "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": list, "history": list}


def check_compatible(state: dict, path: Path, model: nn.Module, config: TrainConfig, steps_per_epoch: int) -> None:
    """Refuse to resume a checkpoint of another experiment, naming the first difference."""
    saved = state["recipe"]
    for key, value in config.recipe().items():
        old = saved.get(key)
        if isinstance(value, tuple):
            value, old = list(value), list(old) if isinstance(old, (list, tuple)) else old
        if old != value:
            raise ValueError(f"checkpoint: {str(path)!r} was trained with {key} = {old!r}, this run asks for "
                             f"{value!r}; resume with the same settings or use another --out")
    own = model.state_dict()
    for key, tensor in state["model"].items():
        if key not in own or own[key].shape != tensor.shape:
            got = "missing" if key not in own else f"shape {tuple(own[key].shape)}"
            raise ValueError(f"checkpoint: {str(path)!r} holds a different network ({key}: shape "
                             f"{tuple(tensor.shape)} in the checkpoint, {got} in this model)")
    missing = sorted(set(own) - set(state["model"]))
    if missing:
        raise ValueError(f"checkpoint: {str(path)!r} holds a different network ({missing[0]} is missing)")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(f"checkpoint: {str(path)!r} has {state['steps_per_epoch']} steps per epoch, this run "
                         f"{steps_per_epoch}; expected the same data, batch size and number of processes")


def rng_states(runtime: Runtime, generator: torch.Generator) -> list:
    """Every process's RNG states (main-process torch/CUDA RNG and the loader generator)."""
    mine = {"torch": torch.get_rng_state(), "loader": generator.get_state(),
            "cuda": torch.cuda.get_rng_state(runtime.device) if runtime.device.type == "cuda" else None}
    if not runtime.distributed:
        return [mine]
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def restore_rng(states: list, runtime: Runtime, generator: torch.Generator) -> None:
    mine = states[runtime.rank]
    torch.set_rng_state(mine["torch"])
    generator.set_state(mine["loader"])
    if runtime.device.type == "cuda" and mine["cuda"] is not None:
        torch.cuda.set_rng_state(mine["cuda"], runtime.device)
