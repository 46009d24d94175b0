"""Train a decoded network with the DeepMAD paper's recipe: one GPU, many (torchrun + DDP), or CPU.

Reads top to bottom like nanoGPT's train.py: config, data, model, optimizer and schedule, the loop,
evaluation, checkpoints, and ``train()`` tying them together. The recipe (SGD momentum 0.9, lr 0.1 per
256 images, per-step cosine decay after 5 warm-up epochs, weight decay without norm/bias, label
smoothing, mixup/cutmix, random erasing, AutoAugment, random resized crop + flip, optional EMA) lives
in ``configs/train/*.toml``. Launch several processes with ``torchrun``; this module never spawns any.
Everything is deterministic for a seed, and ``resume`` continues bit-for-bit on CPU.

Modules: ``config`` (the recipe), ``data`` (datasets, augmentation, loaders), ``runtime`` (device,
torchrun rank, AMP, model placement), ``engine`` (optimizer, schedule, one epoch, evaluation),
``checkpoint`` (save/load, exact resumption), ``metrics`` (CSV/JSON rows, curves), ``trainer`` (``train()``).
"""

from __future__ import annotations

from .config import (AUTO_AUGMENT, CHECKPOINT, CHECKPOINT_FORMAT, CONFIG_DIR, CROPS, DATASETS, DEFAULT_PRESET, DEVICES,
                     ConfigError, TrainConfig, apply_settings, load_train_config, train_config_from_dict)
from .data import (Data, TensorImages, augment_policy, build_data, build_loaders, build_val_loader, digits_data, digits_split,
                   eval_transform,
                   resolved_image_size, train_transform)
from .runtime import Runtime, make_model, prepare_model, setup_runtime, uses_channels_last
from .engine import (TrainEvent, build_batch_mix, build_optimizer, parameter_groups, peak_lr, train_one_epoch,
                     validate)
from .checkpoint import atomic_save, check_compatible, load_checkpoint, restore_rng, rng_states
from .metrics import METRIC_COLUMNS, plot_curves, write_metrics
from .trainer import TrainResult, best_epoch, evaluate_model, portable, preprocessing, train

__all__ = ["AUTO_AUGMENT", "CHECKPOINT", "CHECKPOINT_FORMAT", "CONFIG_DIR", "CROPS", "DATASETS", "DEFAULT_PRESET",
           "DEVICES", "Data", "METRIC_COLUMNS", "Runtime", "TensorImages", "digits_data", "digits_split", "TrainConfig", "ConfigError", "TrainEvent",
           "TrainResult", "apply_settings", "atomic_save", "best_epoch", "build_batch_mix", "augment_policy", "build_data", "build_loaders", "build_val_loader", "build_optimizer",
           "check_compatible", "eval_transform", "evaluate_model", "portable", "preprocessing", "load_checkpoint", "load_train_config",
           "make_model", "parameter_groups", "peak_lr", "plot_curves", "prepare_model", "resolved_image_size",
           "restore_rng", "rng_states", "setup_runtime", "train", "train_config_from_dict", "train_one_epoch", "train_transform",
           "uses_channels_last", "validate", "write_metrics"]
