"""``train()``: config, data, model, optimizer, loop, evaluation and checkpoints tied together, top to bottom."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ..io import atomic_write_text, jsonable
from ..weights import save_weights
from .checkpoint import check_compatible, restore_rng, rng_states, atomic_save, load_checkpoint
from .config import CHECKPOINT, CHECKPOINT_FORMAT, TrainConfig
from .data import Data, build_loaders, build_val_loader, resolved_image_size
from .engine import TrainEvent, build_batch_mix, build_optimizer, peak_lr, train_one_epoch, validate
from .metrics import METRIC_COLUMNS, plot_curves, write_metrics
from .runtime import Runtime, prepare_model, setup_runtime

# -------------------------------------------------------------------------------------------- train
@dataclass
class TrainResult:
    """What a finished (or already finished) run produced."""

    out_dir: Path
    history: list[dict]
    epochs_run: int
    resumed_from: int
    seconds: float
    world_size: int

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def train(model: nn.Module, config: TrainConfig, data: Data, out_dir: str | os.PathLike, *, resume: bool = False,
          callback: Callable[[TrainEvent], None] | None = None, extra: Mapping | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``, checkpointing every epoch into ``out_dir``.

    Launched by ``torchrun``, each process calls this with the same arguments; it joins the process
    group from the environment, wraps the model in DistributedDataParallel and shards the data.
    The caller's global RNG state is left as it was.

    Args:
        model: the freshly built network (e.g. from ``make_model``); its output width must be
            ``data.num_classes``.
        config: the recipe; ``image_size`` must be resolved (> 0).
        data: datasets from ``build_data`` (or any map-style datasets of (image tensor, label)).
        out_dir: run folder for checkpoint.pt, metrics.csv/json, model.pt and curves.png.
        resume: continue from ``out_dir/checkpoint.pt``; without it an existing checkpoint is an error.
        callback: receives TrainEvent progress reports on rank 0.
        extra: JSON-able facts stored in the checkpoint and metrics (e.g. the genotype text).

    Returns:
        The per-epoch metric rows and where they were written.
    """
    resolved_image_size(config)
    runtime = setup_runtime(config)
    try:
        devices = [runtime.device.index] if runtime.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return _train(model, config, data, Path(out_dir), resume, callback or (lambda event: None),
                          dict(extra or {}), runtime)
    finally:
        if runtime.owns_process_group:
            dist.destroy_process_group()


def _train(model, config, data, out_dir, resume, callback, extra, runtime: Runtime) -> TrainResult:
    started = time.perf_counter()
    checkpoint_path = _check_start(config, runtime, out_dir, resume)

    # Randomness: the main-process RNG drives mixup/cutmix, dropout and in-process augmentation;
    # the loader generator seeds the worker processes. Each rank gets its own streams.
    torch.manual_seed(config.seed * 1_000_003 + runtime.rank)
    if runtime.device.type == "cuda":
        torch.cuda.manual_seed(config.seed * 1_000_003 + runtime.rank)
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))

    model = prepare_model(model, config, runtime)
    train_loader, sampler, val_loader = build_loaders(data, config, runtime, generator)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"data: {len(data.train)} training images make no full batch of {config.batch_size}; "
                         "expected a smaller optim.batch_size or more data")
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    ema = _ema(model, config)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    mix = build_batch_mix(config, data.num_classes)
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "ema": ema}

    history: list[dict] = []
    start_epoch = 0
    if resume:
        history, start_epoch = _resume(checkpoint_path, state, config, runtime, generator, steps_per_epoch)

    raw = model
    if config.compile:
        model = torch.compile(model)
    train_model = _distributed(model, runtime)
    if runtime.main:
        _announce(out_dir, config, runtime, extra, raw, data, resume, start_epoch, steps_per_epoch, callback)

    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        epoch_start = time.perf_counter()

        def report(i, loss, lr, speed, epoch=epoch):
            if runtime.main:
                callback(TrainEvent("step", epoch, config.epochs, epoch * steps_per_epoch + i, steps_per_epoch,
                                    loss=loss, lr=lr, images_per_s=speed))

        train_loss, images = train_one_epoch(train_model, ema, optimizer, scheduler, scaler, train_loader, criterion,
                                             mix, data.num_classes, config, runtime, report)
        train_seconds = time.perf_counter() - epoch_start
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": train_loss, "images_per_s": images / max(train_seconds, 1e-9)}
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            row.update({f"val_{k}": v for k, v in validate(model, val_loader, config, runtime,
                                                            data.num_classes).items()})
            if ema is not None:
                row.update({f"ema_val_{k}": v for k, v in validate(ema.module, val_loader, config, runtime,
                                                                    data.num_classes).items()})
        row["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append({k: row.get(k) for k in METRIC_COLUMNS})
        rng = rng_states(runtime, generator)  # collective: every rank takes part
        if runtime.main:
            _save_best(out_dir, raw, history, config, extra)
            _save_epoch(checkpoint_path, epoch, steps_per_epoch, config, runtime, extra, raw, state, rng, history)
            write_metrics(history, out_dir, config)
            callback(TrainEvent("epoch", epoch + 1, config.epochs, (epoch + 1) * steps_per_epoch, steps_per_epoch,
                                loss=train_loss, lr=row["lr"], images_per_s=row["images_per_s"],
                                metrics=history[-1]))

    if runtime.main:
        _finish(out_dir, raw, ema, data, extra, history, config, steps_per_epoch, callback)
    return TrainResult(out_dir, history, config.epochs - start_epoch, start_epoch,
                       time.perf_counter() - started, runtime.world_size)


def _check_start(config, runtime: Runtime, out_dir: Path, resume: bool) -> Path:
    """The checkpoint path, after the checks that need no data: batch split, an existing run without --resume."""
    if config.batch_size % (runtime.world_size * config.accum_steps):
        raise ValueError(f"optim.batch_size: {config.batch_size} is not divisible by {runtime.world_size} processes "
                         f"x optim.accum_steps {config.accum_steps}; expected a multiple of "
                         f"{runtime.world_size * config.accum_steps}")
    checkpoint_path = out_dir / CHECKPOINT
    if not resume and checkpoint_path.exists():
        raise ValueError(f"--out: {str(out_dir)!r} already holds a checkpoint; pass --resume to continue it "
                         "or choose another --out")
    return checkpoint_path


def _ema(model: nn.Module, config):
    """An exponential moving average of the weights, or None when ``ema_decay`` is 0."""
    if config.ema_decay <= 0:
        return None
    if config.ema_warmup:
        return _WarmupEma(model, config.ema_decay)
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    # use_buffers: BN running statistics are averaged too, so the EMA model evaluates as is.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)


class _WarmupEma(nn.Module):
    """timm's ``ModelEmaV3`` with decay warm-up (1 − (1 + step)^−2/3, capped at the decay) behind torch's
    ``AveragedModel`` interface (``module``, ``update_parameters``); the step count is a buffer, so it is
    checkpointed with the averaged weights and a resumed run continues the same warm-up."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        try:
            from timm.utils import ModelEmaV3
        except ImportError:
            raise ValueError("optim.ema_warmup: needs timm's ModelEmaV3; install the extra: "
                             "pip install 'deepmad-evo[timm]'") from None
        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True)
        self.register_buffer("n_averaged", torch.zeros((), dtype=torch.long, device=next(model.parameters()).device))

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    def update_parameters(self, model: nn.Module) -> None:
        self.n_averaged += 1
        self.ema.update(model, step=int(self.n_averaged))


def _resume(path: Path, state: dict, config, runtime: Runtime, generator, steps_per_epoch: int):
    """Load the checkpoint into the model, optimizer, scheduler, scaler and EMA; returns (history, start epoch)."""
    saved = load_checkpoint(path)
    check_compatible(saved, path, state["model"], config, steps_per_epoch)
    try:  # a checkpoint with the right tag and key types can still hold state that does not fit
        for name in ("model", "optimizer", "scheduler"):
            state[name].load_state_dict(saved[name])
        if saved["scaler"]:  # empty when saved without fp16 (AMP may change between runs)
            state["scaler"].load_state_dict(saved["scaler"])
        if state["ema"] is not None:
            state["ema"].load_state_dict(saved["ema"])
        start_epoch = saved["epoch"]
        if not 0 <= start_epoch <= config.epochs:
            raise ValueError(f"epoch {start_epoch} outside [0, {config.epochs}]")
        if saved["world_size"] == runtime.world_size:
            restore_rng(saved["rng"], runtime, generator)
        else:  # another process count: exact continuation is impossible; reseed per epoch instead
            torch.manual_seed(config.seed * 1_000_003 + runtime.rank + 7919 * start_epoch)
            generator.manual_seed(config.seed * 1_000_003 + runtime.rank + 7919 * start_epoch + 1)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise ValueError(f"checkpoint: {str(path)!r} is damaged ({type(exc).__name__}: {reason}); "
                         "delete it to start over") from None
    return list(saved["history"]), start_epoch


def _distributed(model: nn.Module, runtime: Runtime) -> nn.Module:
    """DDP around the (compiled) model on several processes (the nanoGPT order); the model itself on one."""
    if not runtime.distributed:
        return model
    ddp_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)


def _announce(out_dir: Path, config, runtime: Runtime, extra: dict, raw: nn.Module, data: Data, resume: bool,
              start_epoch: int, steps_per_epoch: int, callback) -> None:
    """Write train_config.json and send the "start" event (rank 0)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "train_config.json", json.dumps(
        {"config": config.to_dict(), "world_size": runtime.world_size, **extra}, indent=1) + "\n")
    callback(TrainEvent("start", start_epoch, config.epochs, start_epoch * steps_per_epoch, steps_per_epoch, info={
        "device": str(runtime.device), "world_size": runtime.world_size, "amp": str(runtime.amp_dtype or "off"),
        "parameters": sum(p.numel() for p in raw.parameters()), "train_images": len(data.train),
        "val_images": len(data.val), "peak_lr": peak_lr(config), "resumed": resume, "start_epoch": start_epoch,
    }))


def _save_epoch(path: Path, epoch: int, steps_per_epoch: int, config, runtime: Runtime, extra: dict, raw: nn.Module,
                state: dict, rng: list, history: list[dict]) -> None:
    """The checkpoint after an epoch: everything ``_resume`` needs to continue bit for bit."""
    ema = state["ema"]
    atomic_save({
        "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "steps_per_epoch": steps_per_epoch,
        "world_size": runtime.world_size, "recipe": jsonable(config.recipe()), "extra": jsonable(extra),
        "model": raw.state_dict(), "optimizer": state["optimizer"].state_dict(),
        "scheduler": state["scheduler"].state_dict(), "scaler": state["scaler"].state_dict(),
        "ema": None if ema is None else ema.state_dict(), "rng": rng, "history": history,
    }, path)


def _finish(out_dir: Path, raw: nn.Module, ema, data: Data, extra: dict, history: list[dict], config,
            steps_per_epoch: int, callback) -> None:
    """model.pt, the final metrics and curves, the "done" event (rank 0)."""
    atomic_save({"model": raw.state_dict(), "ema": None if ema is None else ema.module.state_dict(),
                 "num_classes": data.num_classes, "extra": jsonable(extra)}, out_dir / "model.pt")
    if portable(raw):
        save_weights(raw, out_dir, preprocessing=preprocessing(config), extra=_weights_extra(config, extra, history))
        if ema is not None:
            save_weights(ema.module, out_dir / "ema", preprocessing=preprocessing(config),
                         extra=_weights_extra(config, extra, history, "ema_"))
    write_metrics(history, out_dir, config)
    if history:
        plot_curves(history, out_dir / "curves.png")
    callback(TrainEvent("done", config.epochs, config.epochs, config.epochs * steps_per_epoch, steps_per_epoch,
                        metrics=history[-1] if history else None))


# ------------------------------------------------------------------------------- portable weights
def portable(model: nn.Module) -> bool:
    """Whether training writes model.safetensors + config.json: safetensors is installed and the model is
    a classification ``DeepMADNet`` (whose genotype the config records)."""
    import importlib.util

    return (importlib.util.find_spec("safetensors") is not None and hasattr(model, "genotype")
            and not getattr(model, "features_only", False))


def evaluate_model(model: nn.Module, config: TrainConfig, data: Data) -> dict:
    """Loss, top-1 and top-5 (percent) of ``model`` on ``data.val`` with the recipe's device and AMP; no training.

    Under torchrun each process evaluates its shard and the totals are summed.
    """
    runtime = setup_runtime(config)
    try:
        model = prepare_model(model, config, runtime)
        loader = build_val_loader(data, config, runtime)
        return {**validate(model, loader, config, runtime, data.num_classes), "images": len(data.val)}
    finally:
        if runtime.owns_process_group:
            dist.destroy_process_group()


def preprocessing(config) -> dict:
    """The recipe's evaluation transform in timm's ``pretrained_cfg`` keys (input size, mean/std, crop, resize)."""
    return {"input_size": [len(config.mean), config.image_size, config.image_size], "mean": list(config.mean),
            "std": list(config.std), "crop_pct": config.eval_crop, "interpolation": config.interpolation,
            "crop_mode": "center"}


def _weights_extra(config, extra: dict, history: list[dict], prefix: str = "") -> dict:
    last = history[-1] if history else {}
    return {"train_config": config.to_dict(), **jsonable(extra), "epoch": last.get("epoch"),
            "val_top1": last.get(f"{prefix}val_top1"), "val_top5": last.get(f"{prefix}val_top5")}


def best_epoch(history: list[dict]) -> dict | None:
    """The evaluated epoch with the highest val_top1 (the earliest on ties), or None before any evaluation."""
    rows = [r for r in history if r.get("val_top1") is not None]
    return max(rows, key=lambda r: r["val_top1"]) if rows else None


def _save_best(out_dir: Path, raw: nn.Module, history: list[dict], config, extra: dict) -> None:
    """best/: the weights of the best epoch so far by val_top1, rewritten only when this epoch is that best."""
    best = best_epoch(history)
    if best is None or best is not history[-1] or not portable(raw):
        return
    save_weights(raw, out_dir / "best", preprocessing=preprocessing(config),
                 extra=_weights_extra(config, extra, [best]))
