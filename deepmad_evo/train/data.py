"""Datasets and their augmentation (imagefolder, CIFAR-100, fake, scikit-learn digits) and the sharded loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig, ConfigError
from .runtime import Runtime

# ------------------------------------------------------------------------------------------- data
@dataclass
class Data:
    """Training and validation datasets (already transformed) and their number of classes."""

    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    num_classes: int
    description: str


def _interpolation(config: TrainConfig):
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(config.interpolation)


def augment_policy(config: TrainConfig):
    """torchvision's AutoAugment (a policy), RandAugment, TrivialAugmentWide or AugMix, or None."""
    from torchvision.transforms import v2

    mode = _interpolation(config)
    if config.auto_augment == "none":
        return None
    if config.auto_augment == "randaugment":
        return v2.RandAugment(num_ops=config.randaugment_ops, magnitude=config.magnitude, interpolation=mode)
    if config.auto_augment == "trivialaugment":
        return v2.TrivialAugmentWide(interpolation=mode)
    if config.auto_augment == "augmix":
        # AugMix mixes tensors, and torchvision's tensor affine ops take nearest or bilinear only.
        from torchvision.transforms import InterpolationMode

        mode = InterpolationMode.BILINEAR if mode == InterpolationMode.BICUBIC else mode
        return v2.AugMix(severity=config.augmix_severity, interpolation=mode)
    return v2.AutoAugment(v2.AutoAugmentPolicy(config.auto_augment), interpolation=mode)


def train_transform(config: TrainConfig):
    """The recipe's augmentation of one training image (torchvision.transforms.v2)."""
    from torchvision.transforms import v2

    size, mode = resolved_image_size(config), _interpolation(config)
    if config.crop == "resized":
        crop = [v2.RandomResizedCrop(size, scale=(config.min_scale, 1.0), interpolation=mode, antialias=True)]
    elif config.crop == "padded":  # the CIFAR crop: pad by 1/8 of the side, take a random window
        crop = [v2.Resize(size, interpolation=mode, antialias=True), v2.RandomCrop(size, padding=max(1, size // 8))]
    else:
        crop = [v2.Resize(size, interpolation=mode, antialias=True), v2.CenterCrop(size)]
    steps = crop + ([v2.RandomHorizontalFlip(config.hflip)] if config.hflip > 0 else [])
    policy = augment_policy(config)
    if policy is not None:
        steps.append(policy)
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    if config.random_erasing > 0:
        steps.append(v2.RandomErasing(config.random_erasing))
    return v2.Compose(steps)


def eval_transform(config: TrainConfig):
    """Resize to side/eval_crop, centre crop (the standard 0.875 ImageNet protocol), normalise."""
    from torchvision.transforms import v2

    size = resolved_image_size(config)
    return v2.Compose([v2.Resize(int(round(size / config.eval_crop)), interpolation=_interpolation(config),
                                 antialias=True), v2.CenterCrop(size),
                       v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)])


def resolved_image_size(config: TrainConfig) -> int:
    if config.image_size < 1:
        raise ConfigError("data.image_size: 0 (the genotype's) must be resolved before building data; "
                               "set it or build the data through the train command")
    return config.image_size


def build_data(config: TrainConfig, *, eval_only: bool = False) -> Data:
    """Open the configured dataset from local files (nothing is ever downloaded).

    Args:
        config: uses dataset, path, image_size and the augmentation fields.
        eval_only: open only the validation split (``Data.train`` is then the validation set too, or an
            empty FakeData: nothing trains on it).

    Returns:
        The transformed train/val datasets. Missing or malformed data raises a one-line ValueError
        naming the path and the expected layout.
    """
    import torchvision.datasets as datasets

    train_tf, val_tf = train_transform(config), eval_transform(config)
    if config.dataset == "fake":
        shape = (3, config.image_size, config.image_size)
        train = datasets.FakeData(0 if eval_only else config.fake_images, shape, config.fake_classes, train_tf)
        # An offset past the training indices makes the validation images different ones.
        val = datasets.FakeData(config.fake_val_images, shape, config.fake_classes, val_tf,
                                random_offset=config.fake_images)
        return Data(train, val, config.fake_classes, f"FakeData {len(train)}+{len(val)} images")
    if config.dataset == "digits":
        return digits_data(train_tf, val_tf)
    if not config.path:
        raise ValueError(f"--data: required for dataset {config.dataset!r} (a local folder; nothing is downloaded)")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise ValueError(f"--data: {str(root)!r} is not a directory; expected {_LAYOUT[config.dataset]}")
    if config.dataset == "cifar100":
        try:
            val = datasets.CIFAR100(str(root), train=False, transform=val_tf, download=False)
            train = val if eval_only else datasets.CIFAR100(str(root), train=True, transform=train_tf, download=False)
        except RuntimeError:  # torchvision's "Dataset not found or corrupted"
            raise ValueError(f"--data: no CIFAR-100 under {str(root)!r}; expected {_LAYOUT['cifar100']}") from None
        return Data(train, val, 100, f"CIFAR-100 {len(train)}+{len(val)} images from {root}")
    for split in ("val",) if eval_only else ("train", "val"):
        if not (root / split).is_dir():
            raise ValueError(f"--data: {str(root)!r} has no {split}/ folder; expected {_LAYOUT['imagefolder']}")
    try:
        val = datasets.ImageFolder(str(root / "val"), transform=val_tf)
        train = val if eval_only else datasets.ImageFolder(str(root / "train"), transform=train_tf)
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no image files
        raise ValueError(f"--data: {str(root)!r}: {str(exc).splitlines()[0]}; expected {_LAYOUT['imagefolder']}") from None
    if train.classes != val.classes:
        extra = sorted(set(train.classes) ^ set(val.classes))
        raise ValueError(f"--data: {str(root)!r}: train/ and val/ have different class folders (e.g. {extra[0]!r}); "
                         "expected the same classes in both")
    return Data(train, val, len(train.classes), f"ImageFolder {len(train)}+{len(val)} images, "
                f"{len(train.classes)} classes from {root}")


_LAYOUT = {
    "imagefolder": "DIR/train/<class>/<image> and DIR/val/<class>/<image> (torchvision ImageFolder layout)",
    "cifar100": "DIR/cifar-100-python/{train,test,meta} (the extracted cifar-100-python.tar.gz)",
    "fake": "no folder",
    "digits": "no folder (scikit-learn ships the images)",
}


class TensorImages(torch.utils.data.Dataset):
    """Images held in memory as a uint8 tensor (N, C, H, W) with integer labels, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        return (image if self.transform is None else self.transform(image)), int(self.labels[i])


DIGITS_VAL_FRACTION = 0.22  # 395 of the 1 797 images, the same share of every class


def digits_split(labels) -> tuple[list[int], list[int]]:
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



# ------------------------------------------------------------------------------------------ loaders
def build_loaders(data: Data, config: TrainConfig, runtime: Runtime, generator: torch.Generator):
    """Sharded, pinned-memory loaders; returns (train_loader, sampler, val_loader).

    Every run, one process or many, orders the data with the same DistributedSampler permutation
    (seed + epoch), so process r of W takes the positions r, r+W, … of each global batch. That makes a
    W-process run and a 1-process run with W interleaved accumulation steps see identical micro-batches.
    Workers are not persistent: each epoch's workers are re-seeded from ``generator``, whose state is
    checkpointed, which is what makes resumption exact.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    per_rank = config.batch_size // runtime.world_size
    if config.repeated_aug > 1:
        # Repeated augmentation (DeiT): each image appears repeated_aug times per epoch, on different ranks.
        try:
            from timm.data.distributed_sampler import RepeatAugSampler
        except ImportError:
            raise ValueError("data.repeated_aug: needs timm's RepeatAugSampler; install the extra: "
                             "pip install 'deepmad-evo[timm]'") from None
        sampler = RepeatAugSampler(data.train, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True,
                                   num_repeats=config.repeated_aug)
    else:
        sampler = DistributedSampler(data.train, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True,
                                     seed=config.seed, drop_last=True)
    train = DataLoader(data.train, batch_size=per_rank, sampler=sampler, drop_last=True,
                       **_loader_options(config, runtime, generator))
    return train, sampler, build_val_loader(data, config, runtime, generator)


def _loader_options(config: TrainConfig, runtime: Runtime, generator: torch.Generator | None) -> dict:
    return dict(num_workers=config.workers, pin_memory=runtime.device.type == "cuda", generator=generator)


def build_val_loader(data: Data, config: TrainConfig, runtime: Runtime, generator: torch.Generator | None = None):
    """This rank's share of the validation set, unshuffled: shards without padding, so every image is
    counted exactly once across ranks."""
    from torch.utils.data import DataLoader, Subset

    shard = Subset(data.val, range(runtime.rank, len(data.val), runtime.world_size))
    return DataLoader(shard, batch_size=config.batch_size // runtime.world_size, shuffle=False,
                      **_loader_options(config, runtime, generator))
