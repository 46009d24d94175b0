"""Where the process runs: the device, its rank under torchrun, AMP, and the model placed there."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..genotype import Genotype
from .config import TrainConfig

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
    from ..model import build_model

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
    if uses_channels_last(config, runtime):
        model = model.to(memory_format=torch.channels_last)
    return model


def uses_channels_last(config: TrainConfig, runtime: Runtime) -> bool:
    return config.channels_last and runtime.device.type == "cuda"
