"""One epoch of training and one evaluation: optimizer, schedule, batch mixing, the loop, the metrics pass."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .runtime import Runtime, uses_channels_last

# ------------------------------------------------------------------------- optimizer and schedule
def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only; none on norm parameters and biases (all <= 1-D)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_lr(config: TrainConfig) -> float:
    """The linear scaling rule: lr per 256 images times the global batch over 256."""
    return config.lr * config.batch_size / 256


def build_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """SGD with momentum (or AdamW) on the decay/no-decay groups, and torch's per-step schedule: ``LinearLR``
    warm-up from peak/warmup to the peak, then ``CosineAnnealingLR`` down to the scaled ``min_lr``."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=peak_lr(config), betas=(config.momentum, 0.999))
    else:
        optimizer = torch.optim.SGD(groups, lr=peak_lr(config), momentum=config.momentum, nesterov=config.nesterov)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    total = config.epochs * steps_per_epoch
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=peak_lr(config) * config.min_lr / config.lr)
    if warmup <= 1:  # a one-step warm-up starts at the peak already
        return optimizer, cosine
    # Step i of the warm-up runs at peak·(i+1)/warmup: start 1/warmup, reach 1 after warmup-1 steps.
    linear = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return optimizer, SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def build_batch_mix(config: TrainConfig, num_classes: int):
    """MixUp or CutMix (chosen at random per batch) on whole batches, or None when both are off."""
    from torchvision.transforms import v2

    choices = []
    if config.mixup > 0:
        choices.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
    if config.cutmix > 0:
        choices.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)



# --------------------------------------------------------------------------------------------- loop
@dataclass(frozen=True)
class TrainEvent:
    """Progress report passed to the callback (on rank 0 only).

    kind is "start" (info filled), "step" (every log_every steps: loss, lr, images_per_s),
    "epoch" (after the checkpoint of an epoch is written: metrics is the epoch's row) or "done".
    """

    kind: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    metrics: dict | None = None
    info: dict | None = None


def train_one_epoch(model, ema, optimizer, scheduler, scaler, loader, criterion, mix, num_classes: int,
                    config: TrainConfig, runtime: Runtime,
                    report: Callable[[int, float, float, float], None]) -> tuple[float, int]:
    """One pass over the loader; returns (mean training loss over all processes, images seen globally)."""
    model.train()
    accum = config.accum_steps
    memory = torch.channels_last if uses_channels_last(config, runtime) else torch.preserve_format
    loss_sum = torch.zeros((), dtype=torch.float64, device=runtime.device)
    count = 0
    window_loss = torch.zeros((), dtype=torch.float64, device=runtime.device)
    window_start, window_images = time.perf_counter(), 0
    for i, (images, targets) in enumerate(loader):
        images = images.to(runtime.device, non_blocking=True)
        targets = targets.to(runtime.device, non_blocking=True)
        if mix is not None:
            images, targets = mix(images, targets)
        images = images.contiguous(memory_format=memory)
        n = images.shape[0]
        for k in range(accum):
            # Interleaved micro-batches (k, k+accum, …) mirror the DDP shard layout (see build_loaders).
            x, y = images[k::accum], targets[k::accum]
            sync = k == accum - 1 or not runtime.distributed
            with (nullcontext() if sync else model.no_sync()), runtime.autocast():
                logits = model(x)
                if i == 0:
                    _check_logits(logits, num_classes)
                loss = criterion(logits, y)
            scaler.scale(loss * (x.shape[0] / n)).backward()
            loss_sum += loss.detach().double() * x.shape[0]
            window_loss += loss.detach().double() * x.shape[0]
        if config.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update_parameters(_unwrap(model))
        count += n
        window_images += n * runtime.world_size
        if (i + 1) % config.log_every == 0 or i + 1 == len(loader):
            mean = window_loss.item() / max(1, window_images // runtime.world_size)  # .item() syncs the GPU
            elapsed = time.perf_counter() - window_start
            report(i + 1, mean, optimizer.param_groups[0]["lr"], window_images / max(elapsed, 1e-9))
            window_loss.zero_()
            window_start, window_images = time.perf_counter(), 0
    totals = torch.stack([loss_sum, torch.tensor(float(count), dtype=torch.float64, device=runtime.device)])
    if runtime.distributed:
        dist.all_reduce(totals)
    return (totals[0] / totals[1]).item(), int(totals[1].item())


def _check_logits(logits: torch.Tensor, num_classes: int) -> None:
    # A 1000-way head on a 10-class dataset would train silently; refuse it instead.
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"model: outputs shape {tuple(logits.shape)}, expected (batch, {num_classes}) "
                         f"for the {num_classes} classes of the data")


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (what checkpoints and EMA hold)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)


# --------------------------------------------------------------------------------------------- eval
@torch.no_grad()
def validate(model: nn.Module, loader, config: TrainConfig, runtime: Runtime, num_classes: int) -> dict:
    """Cross-entropy (no smoothing), top-1 and top-5 accuracy in percent, summed over all processes."""
    model.eval()
    memory = torch.channels_last if uses_channels_last(config, runtime) else torch.preserve_format
    k = min(5, num_classes)
    totals = torch.zeros(4, dtype=torch.float64, device=runtime.device)
    for images, targets in loader:
        images = images.to(runtime.device, non_blocking=True).contiguous(memory_format=memory)
        targets = targets.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            logits = model(images)
        logits = logits.float()
        _check_logits(logits, num_classes)
        hits = logits.topk(k, dim=1).indices == targets[:, None]
        totals += torch.stack([F.cross_entropy(logits, targets, reduction="sum").double(),
                               hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                               torch.tensor(float(len(targets)), dtype=torch.float64, device=runtime.device)])
    if runtime.distributed:
        dist.all_reduce(totals)
    n = max(totals[3].item(), 1.0)
    return {"loss": totals[0].item() / n, "top1": 100 * totals[1].item() / n, "top5": 100 * totals[2].item() / n}
