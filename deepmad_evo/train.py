"""Train a decoded network with the DeepMAD paper's recipe: one GPU, many (torchrun + DDP), or CPU.

Reads top to bottom like nanoGPT's train.py: config, data, model, optimizer and schedule, the loop,
evaluation, checkpoints, and ``train()`` tying them together. The recipe (SGD momentum 0.9, lr 0.1 per
256 images, per-step cosine decay after 5 warm-up epochs, weight decay without norm/bias, label
smoothing, mixup/cutmix, random erasing, AutoAugment, random resized crop + flip, optional EMA) lives
in ``configs/train/*.toml``. Launch several processes with ``torchrun``; this module never spawns any.
Everything is deterministic for a seed, and ``resume`` continues bit-for-bit on CPU.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import tomllib
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .genotype import Genotype, atomic_path, atomic_write_bytes, atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"
DEFAULT_PRESET = "imagenet"
DATASETS = ("imagefolder", "cifar100", "fake", "digits")
CROPS = ("resized", "padded", "center")
AUTO_AUGMENT = ("imagenet", "cifar10", "svhn", "none")
DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = "deepmad-evo/checkpoint/1"
CHECKPOINT = "checkpoint.pt"

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TrainConfigError(ValueError):
    """A training configuration file or override is invalid."""


# ----------------------------------------------------------------------------------------- config
def _check_int(minimum: int):
    def check(v, where):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise TrainConfigError(f"{where}: expected an integer >= {minimum}, got {v!r}")
        return v
    return check


def _check_float(low: float, high: float = math.inf, *, open_low: bool = False, open_high: bool = False):
    def check(v, where):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
        if not ok:
            bound = f"> {low:g}" if open_low else f">= {low:g}"
            if high < math.inf:
                bound += f" and {'<' if open_high else '<='} {high:g}"
            raise TrainConfigError(f"{where}: expected a number {bound}, got {v!r}")
        return float(v)
    return check


def _check_bool(v, where):
    if not isinstance(v, bool):
        raise TrainConfigError(f"{where}: expected true or false, got {v!r}")
    return v


def _check_str(v, where):
    if not isinstance(v, str):
        raise TrainConfigError(f"{where}: expected a string, got {v!r}")
    return v


def _check_choice(choices):
    def check(v, where):
        if v not in choices:
            raise TrainConfigError(f"{where}: expected one of {', '.join(choices)}, got {v!r}")
        return v
    return check


def _check_triple(v, where):
    if (not isinstance(v, (list, tuple)) or len(v) != 3
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
        raise TrainConfigError(f"{where}: expected a list of 3 numbers (one per RGB channel), got {v!r}")
    return tuple(float(x) for x in v)


def _option(default, table: str, check, runtime: bool = False):
    """A config field: its TOML table, its validator, and whether it may change on --resume."""
    return field(default=default, metadata={"table": table, "check": check, "runtime": runtime})


@dataclass(frozen=True)
class TrainConfig:
    """The whole training recipe; defaults are the paper's ImageNet-1K recipe (configs/train/imagenet.toml).

    Fields are grouped into the TOML tables [data], [augment], [optim], [model] and [run]. Fields
    marked runtime (data path, workers, device, AMP, compile, logging) may differ when resuming; the
    rest define the experiment and must match the checkpoint.
    """

    # [data]
    dataset: str = _option("imagefolder", "data", _check_choice(DATASETS))
    path: str = _option("", "data", _check_str, runtime=True)
    image_size: int = _option(0, "data", _check_int(0))  # 0: the genotype's own image size
    eval_crop: float = _option(0.875, "data", _check_float(0.0, 1.0, open_low=True))
    mean: tuple = _option(IMAGENET_MEAN, "data", _check_triple)
    std: tuple = _option(IMAGENET_STD, "data", _check_triple)
    fake_images: int = _option(1024, "data", _check_int(1))
    fake_val_images: int = _option(256, "data", _check_int(1))
    fake_classes: int = _option(1000, "data", _check_int(2))
    workers: int = _option(8, "data", _check_int(0), runtime=True)
    # [augment]
    crop: str = _option("resized", "augment", _check_choice(CROPS))
    min_scale: float = _option(0.08, "augment", _check_float(0.0, 1.0, open_low=True))
    hflip: float = _option(0.5, "augment", _check_float(0.0, 1.0))
    auto_augment: str = _option("imagenet", "augment", _check_choice(AUTO_AUGMENT))
    random_erasing: float = _option(0.25, "augment", _check_float(0.0, 1.0))
    mixup: float = _option(0.2, "augment", _check_float(0.0))
    cutmix: float = _option(1.0, "augment", _check_float(0.0))
    label_smoothing: float = _option(0.1, "augment", _check_float(0.0, 1.0))
    # [optim]
    epochs: int = _option(480, "optim", _check_int(1))
    batch_size: int = _option(256, "optim", _check_int(1))
    lr: float = _option(0.1, "optim", _check_float(0.0, open_low=True))  # per 256 images
    min_lr: float = _option(0.0, "optim", _check_float(0.0))  # per 256 images, reached at the end
    momentum: float = _option(0.9, "optim", _check_float(0.0, 1.0))
    nesterov: bool = _option(False, "optim", _check_bool)
    weight_decay: float = _option(4e-5, "optim", _check_float(0.0))
    warmup_epochs: float = _option(5.0, "optim", _check_float(0.0))
    accum_steps: int = _option(1, "optim", _check_int(1))
    grad_clip: float = _option(0.0, "optim", _check_float(0.0))  # 0: off
    ema_decay: float = _option(0.0, "optim", _check_float(0.0, 1.0, open_high=True))  # 0: no EMA
    # [model]
    drop_rate: float = _option(0.0, "model", _check_float(0.0, 1.0, open_high=True))
    drop_path_rate: float = _option(0.0, "model", _check_float(0.0, 1.0, open_high=True))
    zero_init_residual: bool = _option(False, "model", _check_bool)
    sync_bn: bool = _option(False, "model", _check_bool)
    # [run]
    seed: int = _option(0, "run", _check_int(0))
    device: str = _option("auto", "run", _check_choice(DEVICES), runtime=True)
    amp: bool = _option(True, "run", _check_bool, runtime=True)
    channels_last: bool = _option(True, "run", _check_bool, runtime=True)
    compile: bool = _option(False, "run", _check_bool, runtime=True)
    log_every: int = _option(20, "run", _check_int(1), runtime=True)
    eval_every: int = _option(1, "run", _check_int(1), runtime=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](getattr(self, f.name), f"{f.metadata['table']}.{f.name}"))
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise TrainConfigError(f"optim.warmup_epochs: {self.warmup_epochs:g} leaves no decay phase in "
                                   f"optim.epochs = {self.epochs}; expected fewer warm-up epochs than epochs")
        if self.min_lr > self.lr:
            raise TrainConfigError(f"optim.min_lr: {self.min_lr:g} exceeds optim.lr = {self.lr:g}")

    def with_overrides(self, **changes: Any) -> "TrainConfig":
        """A copy with the given fields replaced (``None`` values are ignored), validated again."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TrainConfigError(f"train config: unknown field {unknown[0]!r}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Nested {table: {key: value}} form, the TOML layout (tuples become lists)."""
        out: dict[str, dict] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out.setdefault(f.metadata["table"], {})[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def recipe(self) -> dict:
        """The fields that define the experiment (everything a resumed run must share)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata["runtime"]}


def load_train_config(source: str | os.PathLike | None = None) -> TrainConfig:
    """Read a training recipe by path or preset name (``cifar100`` → ``configs/train/cifar100.toml``).

    Args:
        source: a TOML path or a preset name; default ``imagenet``.

    Returns:
        The validated config. Unknown tables or keys are errors naming the file and the key.
    """
    source = DEFAULT_PRESET if source is None else source
    path = Path(source)
    if not path.is_file():
        named = CONFIG_DIR / f"{source}.toml"
        if not named.is_file():
            names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise TrainConfigError(f"--config: {str(source)!r} is neither a file nor a training preset; presets: {names}")
        path = named
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TrainConfigError(f"{path}: not valid TOML ({exc})") from None
    by_table: dict[str, dict[str, str]] = {}
    for f in fields(TrainConfig):
        by_table.setdefault(f.metadata["table"], {})[f.name] = f.name
    values = {}
    for table, content in data.items():
        if table not in by_table or not isinstance(content, dict):
            raise TrainConfigError(f"{path}: unknown table [{table}]; expected one of "
                                   f"{', '.join(f'[{t}]' for t in by_table)}")
        for key, value in content.items():
            if key not in by_table[table]:
                raise TrainConfigError(f"{path}: unknown key {table}.{key}; expected one of "
                                       f"{', '.join(sorted(by_table[table]))}")
            values[key] = value
    try:
        return TrainConfig(**values)
    except TrainConfigError as exc:
        raise TrainConfigError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------------- data
@dataclass
class Data:
    """Training and validation datasets (already transformed) and their number of classes."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    num_classes: int
    description: str


def train_transform(config: TrainConfig):
    """The recipe's augmentation of one training image (torchvision.transforms.v2)."""
    from torchvision.transforms import v2

    size = _image_size(config)
    if config.crop == "resized":
        crop = [v2.RandomResizedCrop(size, scale=(config.min_scale, 1.0), antialias=True)]
    elif config.crop == "padded":  # the CIFAR crop: pad by 1/8 of the side, take a random window
        crop = [v2.Resize(size, antialias=True), v2.RandomCrop(size, padding=max(1, size // 8))]
    else:
        crop = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    steps = crop + ([v2.RandomHorizontalFlip(config.hflip)] if config.hflip > 0 else [])
    if config.auto_augment != "none":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy(config.auto_augment)))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    if config.random_erasing > 0:
        steps.append(v2.RandomErasing(config.random_erasing))
    return v2.Compose(steps)


def eval_transform(config: TrainConfig):
    """Resize to side/eval_crop, centre crop (the standard 0.875 ImageNet protocol), normalise."""
    from torchvision.transforms import v2

    size = _image_size(config)
    return v2.Compose([v2.Resize(int(round(size / config.eval_crop)), antialias=True), v2.CenterCrop(size),
                       v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)])


def _image_size(config: TrainConfig) -> int:
    if config.image_size < 1:
        raise TrainConfigError("data.image_size: 0 (the genotype's) must be resolved before building data; "
                               "set it or build the data through the train command")
    return config.image_size


def build_data(config: TrainConfig) -> Data:
    """Open the configured dataset from local files (nothing is ever downloaded).

    Args:
        config: uses dataset, path, image_size and the augmentation fields.

    Returns:
        The transformed train/val datasets. Missing or malformed data raises a one-line ValueError
        naming the path and the expected layout.
    """
    import torchvision.datasets as datasets

    train_tf, val_tf = train_transform(config), eval_transform(config)
    if config.dataset == "fake":
        shape = (3, config.image_size, config.image_size)
        train = datasets.FakeData(config.fake_images, shape, config.fake_classes, train_tf)
        # An offset past the training indices makes the validation images different ones.
        val = datasets.FakeData(config.fake_val_images, shape, config.fake_classes, val_tf,
                                random_offset=config.fake_images)
        return Data(train, val, config.fake_classes, f"FakeData {config.fake_images}+{config.fake_val_images} images")
    if config.dataset == "digits":
        return digits_data(train_tf, val_tf)
    if not config.path:
        raise ValueError(f"--data: required for dataset {config.dataset!r} (a local folder; nothing is downloaded)")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data: {str(root)!r} is not a directory; expected {_LAYOUT[config.dataset]}")
    if config.dataset == "cifar100":
        try:
            train = datasets.CIFAR100(str(root), train=True, transform=train_tf, download=False)
            val = datasets.CIFAR100(str(root), train=False, transform=val_tf, download=False)
        except RuntimeError:  # torchvision's "Dataset not found or corrupted"
            raise ValueError(f"--data: no CIFAR-100 under {str(root)!r}; expected {_LAYOUT['cifar100']}") from None
        return Data(train, val, 100, f"CIFAR-100 {len(train)}+{len(val)} images from {root}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ValueError(f"--data: {str(root)!r} has no {split}/ folder; expected {_LAYOUT['imagefolder']}")
    try:
        train = datasets.ImageFolder(str(root / "train"), transform=train_tf)
        val = datasets.ImageFolder(str(root / "val"), transform=val_tf)
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no image files
        raise ValueError(f"--data: {str(root)!r}: {str(exc).splitlines()[0]}; expected {_LAYOUT['imagefolder']}") from None
    if train.classes != val.classes:
        extra = sorted(set(train.classes) ^ set(val.classes))
        raise ValueError(f"--data: {str(root)!r}: train/ and val/ have different class folders (e.g. {extra[0]!r}); "
                         "expected the same classes in both")
    return Data(train, val, len(train.classes), f"ImageFolder {len(train)}+{len(val)} images, "
                f"{len(train.classes)} classes from {root}")


class TensorImages(torch.utils.data.Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W) with integer labels, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        return (image if self.transform is None else self.transform(image)), int(self.labels[i])


DIGITS_VAL_FRACTION = 0.22  # 397 of the 1 797 images, the same share of every class


def digits_split(labels) -> tuple:
    """Fixed, class-stratified train/val indices of scikit-learn's digits (independent of any seed)."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(20230601)  # a constant: the split is part of the dataset, not of a run
    train, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(DIGITS_VAL_FRACTION * len(members)))
        val.extend(members[:k].tolist())
        train.extend(members[k:].tolist())
    return sorted(train), sorted(val)


def digits_data(train_tf, val_tf) -> Data:
    """scikit-learn's handwritten digits (1 797 8x8 images, 10 classes; shipped with the package, no download).

    Grey levels 0..16 become uint8 0..255, repeated over 3 channels so every RGB genotype takes them;
    the recipe's transforms upscale them to the training side.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("--dataset: 'digits' needs scikit-learn; install the extra: pip install "
                         "'deepmad-evo[digits]'") from None
    digits = load_digits()
    images = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype("uint8"))[:, None].expand(-1, 3, -1, -1)
    labels = torch.from_numpy(digits.target.astype("int64"))
    train_idx, val_idx = digits_split(digits.target)
    train = TensorImages(images[train_idx].contiguous(), labels[train_idx], train_tf)
    val = TensorImages(images[val_idx].contiguous(), labels[val_idx], val_tf)
    return Data(train, val, 10, f"scikit-learn digits {len(train)}+{len(val)} images (8x8, upscaled)")


_LAYOUT = {
    "imagefolder": "DIR/train/<class>/<image> and DIR/val/<class>/<image> (torchvision ImageFolder layout)",
    "cifar100": "DIR/cifar-100-python/{train,test,meta} (the extracted cifar-100-python.tar.gz)",
    "fake": "no folder",
    "digits": "no folder (scikit-learn ships the images)",
}


# ------------------------------------------------------------------------------------------ model
def make_model(genotype: Genotype, num_classes: int, config: TrainConfig) -> nn.Module:
    """Decode the genotype, initialised from ``config.seed`` without touching the global RNG.

    Args:
        genotype: the network (``deepmad_evo.models.get_genotype(name)`` gives the presets).
        num_classes: classifier width (the dataset's number of classes).
        config: supplies seed, drop_rate, drop_path_rate and zero_init_residual.

    Returns:
        The freshly initialised module (on CPU, in float32).
    """
    from .model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(genotype, num_classes, drop_rate=config.drop_rate, drop_path_rate=config.drop_path_rate,
                           zero_init_residual=config.zero_init_residual)


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its device, its rank among ``world_size`` processes, the AMP dtype."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    owns_process_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def setup_runtime(config: TrainConfig) -> Runtime:
    """Join the torchrun process group when launched by torchrun (env RANK/WORLD_SIZE), pick the device.

    NCCL on GPUs, gloo on CPU. bf16 autocast where the GPU supports it, else fp16 (with GradScaler);
    no autocast on CPU, where it would be slower and break bit-for-bit resumption.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if config.device == "auto" else config.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise ValueError("run.device: 'cuda' requested but torch sees no CUDA device; expected 'auto' or 'cpu'")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        owns = True
    amp = None
    if cuda and config.amp:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Runtime(device, rank, local_rank, world, amp, owns)


def prepare_model(model: nn.Module, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """Move to the device (channels_last on GPU: faster cuDNN kernels for NHWC), SyncBN when asked."""
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if runtime.distributed and config.sync_bn and runtime.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(runtime.device)
    if _channels_last(config, runtime):
        model = model.to(memory_format=torch.channels_last)
    return model


def _channels_last(config: TrainConfig, runtime: Runtime) -> bool:
    return config.channels_last and runtime.device.type == "cuda"


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


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, floor: float) -> float:
    """Per-step multiplier of the peak lr: linear warm-up to 1, then cosine decay to ``floor``.

    Args:
        step: optimizer steps taken so far (0 for the first step).
        warmup_steps: steps of linear warm-up.
        total_steps: steps of the whole run.
        floor: final multiplier (min_lr / lr).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """SGD with momentum on the decay/no-decay groups and a per-step LambdaLR schedule."""
    optimizer = torch.optim.SGD(parameter_groups(model, config.weight_decay), lr=peak_lr(config),
                                momentum=config.momentum, nesterov=config.nesterov)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    total = config.epochs * steps_per_epoch
    floor = config.min_lr / config.lr

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps=warmup, total_steps=total, floor=floor)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


# ------------------------------------------------------------------------------------------ loaders
def build_loaders(data: Data, config: TrainConfig, runtime: Runtime, generator: torch.Generator):
    """Sharded, pinned-memory loaders; returns (train_loader, sampler, val_loader).

    Every run, one process or many, orders the data with the same DistributedSampler permutation
    (seed + epoch), so process r of W takes the positions r, r+W, … of each global batch. That makes a
    W-process run and a 1-process run with W interleaved accumulation steps see identical micro-batches.
    Workers are not persistent: each epoch's workers are re-seeded from ``generator``, whose state is
    checkpointed, which is what makes resumption exact.
    """
    from torch.utils.data import DataLoader, DistributedSampler, Subset

    per_rank = config.batch_size // runtime.world_size
    sampler = DistributedSampler(data.train, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    pin = runtime.device.type == "cuda"
    common = dict(num_workers=config.workers, pin_memory=pin, generator=generator)
    train = DataLoader(data.train, batch_size=per_rank, sampler=sampler, drop_last=True, **common)
    # Validation shards without padding, so every image is counted exactly once across ranks.
    shard = Subset(data.val, range(runtime.rank, len(data.val), runtime.world_size))
    val = DataLoader(shard, batch_size=per_rank, shuffle=False, **common)
    return train, sampler, val


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
    memory = torch.channels_last if _channels_last(config, runtime) else torch.preserve_format
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
def evaluate(model: nn.Module, loader, config: TrainConfig, runtime: Runtime, num_classes: int) -> dict:
    """Cross-entropy (no smoothing), top-1 and top-5 accuracy in percent, summed over all processes."""
    model.eval()
    memory = torch.channels_last if _channels_last(config, runtime) else torch.preserve_format
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
    return state


def _check_compatible(state: dict, path: Path, model: nn.Module, config: TrainConfig, steps_per_epoch: int) -> None:
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


def _rng_states(runtime: Runtime, generator: torch.Generator) -> list:
    """Every process's RNG states (main-process torch/CUDA RNG and the loader generator)."""
    mine = {"torch": torch.get_rng_state(), "loader": generator.get_state(),
            "cuda": torch.cuda.get_rng_state(runtime.device) if runtime.device.type == "cuda" else None}
    if not runtime.distributed:
        return [mine]
    gathered: list = [None] * runtime.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def _restore_rng(states: list, runtime: Runtime, generator: torch.Generator) -> None:
    mine = states[runtime.rank]
    torch.set_rng_state(mine["torch"])
    generator.set_state(mine["loader"])
    if runtime.device.type == "cuda" and mine["cuda"] is not None:
        torch.cuda.set_rng_state(mine["cuda"], runtime.device)


# ---------------------------------------------------------------------------------------- metrics
METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_top1", "val_top5", "ema_val_loss",
                  "ema_val_top1", "ema_val_top5", "images_per_s", "epoch_seconds")


def write_metrics(history: list[dict], out_dir: Path, config: TrainConfig) -> None:
    """metrics.csv (one row per epoch) and metrics.json (rows plus the config), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in METRIC_COLUMNS})
    atomic_write_text(out_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.json", json.dumps({"config": config.to_dict(), "epochs": history},
                                                           indent=1) + "\n")


def plot_curves(history: list[dict], path: str | os.PathLike) -> None:
    """curves.png: losses, validation accuracy and learning rate per epoch (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]

    def series(key):
        return [math.nan if row.get(key) is None else row[key] for row in history]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(epochs, series("train_loss"), label="train")
    axes[0].plot(epochs, series("val_loss"), label="val")
    axes[0].set_title("loss")
    axes[1].plot(epochs, series("val_top1"), label="top-1")
    axes[1].plot(epochs, series("val_top5"), label="top-5")
    if any(row.get("ema_val_top1") is not None for row in history):
        axes[1].plot(epochs, series("ema_val_top1"), label="EMA top-1")
    axes[1].set_title("validation accuracy (%)")
    axes[2].plot(epochs, series("lr"))
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


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
    _image_size(config)
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
    if config.batch_size % (runtime.world_size * config.accum_steps):
        raise ValueError(f"optim.batch_size: {config.batch_size} is not divisible by {runtime.world_size} processes "
                         f"x optim.accum_steps {config.accum_steps}; expected a multiple of "
                         f"{runtime.world_size * config.accum_steps}")
    checkpoint_path = out_dir / CHECKPOINT
    if not resume and checkpoint_path.exists():
        raise ValueError(f"--out: {str(out_dir)!r} already holds a checkpoint; pass --resume to continue it "
                         "or choose another --out")

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
    ema = None
    if config.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # use_buffers: BN running statistics are averaged too, so the EMA model evaluates as is.
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    mix = build_batch_mix(config, data.num_classes)

    history: list[dict] = []
    start_epoch = 0
    if resume:
        state = load_checkpoint(checkpoint_path)
        _check_compatible(state, checkpoint_path, model, config, steps_per_epoch)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without fp16 (AMP may change between runs)
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history = list(state["history"])
        start_epoch = state["epoch"]
        if state["world_size"] == runtime.world_size:
            _restore_rng(state["rng"], runtime, generator)
        else:  # another process count: exact continuation is impossible; reseed per epoch instead
            torch.manual_seed(config.seed * 1_000_003 + runtime.rank + 7919 * start_epoch)
            generator.manual_seed(config.seed * 1_000_003 + runtime.rank + 7919 * start_epoch + 1)

    raw = model
    if config.compile:
        model = torch.compile(model)
    if runtime.distributed:
        # compile first, then DDP (the nanoGPT order); evaluation uses the unwrapped (compiled) module.
        ddp_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)
    else:
        train_model = model
    if runtime.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "train_config.json", json.dumps(
            {"config": config.to_dict(), "world_size": runtime.world_size, **extra}, indent=1) + "\n")
        callback(TrainEvent("start", start_epoch, config.epochs, start_epoch * steps_per_epoch, steps_per_epoch, info={
            "device": str(runtime.device), "world_size": runtime.world_size, "amp": str(runtime.amp_dtype or "off"),
            "parameters": sum(p.numel() for p in raw.parameters()), "train_images": len(data.train),
            "val_images": len(data.val), "peak_lr": peak_lr(config), "resumed": resume, "start_epoch": start_epoch,
        }))

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
            row.update({f"val_{k}": v for k, v in evaluate(model, val_loader, config, runtime,
                                                            data.num_classes).items()})
            if ema is not None:
                row.update({f"ema_val_{k}": v for k, v in evaluate(ema.module, val_loader, config, runtime,
                                                                    data.num_classes).items()})
        row["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append({k: row.get(k) for k in METRIC_COLUMNS})
        rng = _rng_states(runtime, generator)  # collective: every rank takes part
        if runtime.main:
            atomic_save({
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "steps_per_epoch": steps_per_epoch,
                "world_size": runtime.world_size, "recipe": _jsonable(config.recipe()), "extra": _jsonable(extra),
                "model": raw.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "ema": None if ema is None else ema.state_dict(), "rng": rng,
                "history": history,
            }, checkpoint_path)
            write_metrics(history, out_dir, config)
            callback(TrainEvent("epoch", epoch + 1, config.epochs, (epoch + 1) * steps_per_epoch, steps_per_epoch,
                                loss=train_loss, lr=row["lr"], images_per_s=row["images_per_s"],
                                metrics=history[-1]))

    if runtime.main:
        atomic_save({"model": raw.state_dict(), "ema": None if ema is None else ema.module.state_dict(),
                     "num_classes": data.num_classes, "extra": _jsonable(extra)}, out_dir / "model.pt")
        write_metrics(history, out_dir, config)
        if history:
            plot_curves(history, out_dir / "curves.png")
        callback(TrainEvent("done", config.epochs, config.epochs, config.epochs * steps_per_epoch, steps_per_epoch,
                            metrics=history[-1] if history else None))
    return TrainResult(out_dir, history, config.epochs - start_epoch, start_epoch,
                       time.perf_counter() - started, runtime.world_size)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
