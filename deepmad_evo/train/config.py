"""The training recipe: ``TrainConfig`` read from ``configs/train/*.toml``, validated field by field."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..limits import MAX_CLASSES, MAX_IMAGE_SIDE, MAX_SEED
from ..resources import recipe_dir
from ..schema import ConfigError, boolean, choice, integer, number, read_toml, sequence, string

CONFIG_DIR = recipe_dir()
DEFAULT_PRESET = "imagenet"
DATASETS = ("imagefolder", "cifar100", "fake", "digits")
CROPS = ("resized", "padded", "center")
# AutoAugment policies (imagenet, cifar10, svhn), RandAugment, TrivialAugmentWide, AugMix: torchvision's.
AUTO_AUGMENT = ("imagenet", "cifar10", "svhn", "randaugment", "trivialaugment", "augmix", "none")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
OPTIMIZERS = ("sgd", "adamw")
DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = "deepmad-evo/checkpoint/1"
CHECKPOINT = "checkpoint.pt"

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------- config
_RGB = sequence(number(), 3, "a list of 3 numbers (one per RGB channel)")


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
    dataset: str = _option("imagefolder", "data", choice(DATASETS))
    path: str = _option("", "data", string, runtime=True)
    image_size: int = _option(0, "data", integer(0, MAX_IMAGE_SIDE))  # 0: the genotype's own image size
    eval_crop: float = _option(0.875, "data", number(0.0, 1.0, open_low=True))
    interpolation: str = _option("bilinear", "data", choice(INTERPOLATIONS))  # resizes and augment policies
    mean: tuple = _option(IMAGENET_MEAN, "data", _RGB)
    std: tuple = _option(IMAGENET_STD, "data", _RGB)
    fake_images: int = _option(1024, "data", integer(1, 10**7))
    fake_val_images: int = _option(256, "data", integer(1, 10**7))
    fake_classes: int = _option(1000, "data", integer(2, MAX_CLASSES))
    workers: int = _option(8, "data", integer(0, 1024), runtime=True)
    repeated_aug: int = _option(1, "data", integer(1))  # > 1: timm's RepeatAugSampler with this many repeats
    # [augment]
    crop: str = _option("resized", "augment", choice(CROPS))
    min_scale: float = _option(0.08, "augment", number(0.0, 1.0, open_low=True))
    hflip: float = _option(0.5, "augment", number(0.0, 1.0))
    auto_augment: str = _option("imagenet", "augment", choice(AUTO_AUGMENT))
    randaugment_ops: int = _option(2, "augment", integer(1))  # RandAugment num_ops
    magnitude: int = _option(9, "augment", integer(0))  # RandAugment magnitude (of 31 bins)
    augmix_severity: int = _option(3, "augment", integer(1))
    random_erasing: float = _option(0.25, "augment", number(0.0, 1.0))
    mixup: float = _option(0.2, "augment", number(0.0))
    cutmix: float = _option(1.0, "augment", number(0.0))
    label_smoothing: float = _option(0.1, "augment", number(0.0, 1.0))
    # [optim]
    optimizer: str = _option("sgd", "optim", choice(OPTIMIZERS))  # adamw: torch.optim.AdamW
    epochs: int = _option(480, "optim", integer(1, 10**6))
    batch_size: int = _option(256, "optim", integer(1, 2**20))
    lr: float = _option(0.1, "optim", number(0.0, open_low=True))  # per 256 images
    min_lr: float = _option(0.0, "optim", number(0.0))  # per 256 images, reached at the end
    momentum: float = _option(0.9, "optim", number(0.0, 1.0))  # SGD momentum; AdamW's beta1
    nesterov: bool = _option(False, "optim", boolean)
    weight_decay: float = _option(4e-5, "optim", number(0.0))
    warmup_epochs: float = _option(5.0, "optim", number(0.0))
    accum_steps: int = _option(1, "optim", integer(1))
    grad_clip: float = _option(0.0, "optim", number(0.0))  # 0: off
    ema_decay: float = _option(0.0, "optim", number(0.0, 1.0, open_high=True))  # 0: no EMA
    ema_warmup: bool = _option(False, "optim", boolean)  # timm's ModelEmaV3 decay warm-up (needs timm)
    # [model]
    drop_rate: float = _option(0.0, "model", number(0.0, 1.0, open_high=True))
    drop_path_rate: float = _option(0.0, "model", number(0.0, 1.0, open_high=True))
    zero_init_residual: bool = _option(False, "model", boolean)
    sync_bn: bool = _option(False, "model", boolean)
    # [run]
    seed: int = _option(0, "run", integer(0, MAX_SEED))
    device: str = _option("auto", "run", choice(DEVICES), runtime=True)
    amp: bool = _option(True, "run", boolean, runtime=True)
    channels_last: bool = _option(True, "run", boolean, runtime=True)
    compile: bool = _option(False, "run", boolean, runtime=True)
    log_every: int = _option(20, "run", integer(1), runtime=True)
    eval_every: int = _option(1, "run", integer(1), runtime=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](getattr(self, f.name), f"{f.metadata['table']}.{f.name}"))
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ConfigError(f"optim.warmup_epochs: {self.warmup_epochs:g} leaves no decay phase in "
                                   f"optim.epochs = {self.epochs}; expected fewer warm-up epochs than epochs")
        if self.min_lr > self.lr:
            raise ConfigError(f"optim.min_lr: {self.min_lr:g} exceeds optim.lr = {self.lr:g}")
        if self.magnitude > 30:  # torchvision's RandAugment has 31 magnitude bins
            raise ConfigError(f"augment.magnitude: expected an integer in [0, 30], got {self.magnitude}")

    def with_overrides(self, **changes: Any) -> "TrainConfig":
        """A copy with the given fields replaced (``None`` values are ignored), validated again."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"train config: unknown field {unknown[0]!r}")
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
    path, data = read_toml(DEFAULT_PRESET if source is None else source, CONFIG_DIR, "training preset")
    return train_config_from_dict(data, str(path))


def train_config_from_dict(data: Any, where: str) -> TrainConfig:
    """A ``TrainConfig`` from its nested ``{table: {key: value}}`` form (a TOML file, ``to_dict()``).

    Raises:
        ConfigError: naming ``where`` and the unknown table / key or the bad value.
    """
    by_table: dict[str, dict[str, str]] = {}
    for f in fields(TrainConfig):
        by_table.setdefault(f.metadata["table"], {})[f.name] = f.name
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected tables of recipe fields, got {type(data).__name__}")
    values = {}
    for table, content in data.items():
        if table not in by_table or not isinstance(content, dict):
            raise ConfigError(f"{where}: unknown table [{table}]; expected one of "
                                   f"{', '.join(f'[{t}]' for t in by_table)}")
        for key, value in content.items():
            if key not in by_table[table]:
                raise ConfigError(f"{where}: unknown key {table}.{key}; expected one of "
                                       f"{', '.join(sorted(by_table[table]))}")
            values[key] = value
    try:
        return TrainConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def apply_settings(config: TrainConfig, settings: list[str] | tuple[str, ...]) -> TrainConfig:
    """``--set section.key=value`` overrides for any recipe field (value in TOML syntax; bare words are strings).

    Args:
        config: the recipe to change.
        settings: strings such as ``augment.auto_augment=randaugment``, ``optim.lr=0.05``, ``data.mean=[0.5,0.5,0.5]``.

    Returns:
        The validated copy. A malformed setting, an unknown section or key, or a bad value raises a
        one-line ``ConfigError`` naming it.
    """
    tables: dict[str, set[str]] = {}
    for f in fields(TrainConfig):
        tables.setdefault(f.metadata["table"], set()).add(f.name)
    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, text = str(item).partition("=")
        table, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set: expected section.key=value (e.g. optim.lr=0.05), got {item!r}")
        if table not in tables:
            raise ConfigError(f"--set: unknown section {table!r} in {item!r}; expected one of "
                                   f"{', '.join(sorted(tables))}")
        if name not in tables[table]:
            raise ConfigError(f"--set: unknown key {table}.{name}; expected one of {', '.join(sorted(tables[table]))}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: the string itself
        changes[name] = value
    return config.with_overrides(**changes)
