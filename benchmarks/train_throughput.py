"""Training throughput of decoded DeepMAD networks vs torchvision, and an AMP + channels_last + compile run.

    python benchmarks/train_throughput.py                  # GPU: the targets of issue 6
    python benchmarks/train_throughput.py --compile        # also torch.compile the throughput models
    python benchmarks/train_throughput.py --json out.json  # keep the numbers

Part 1 measures images/s of the trainer's own training step (``train.train_one_epoch``: SGD momentum,
label smoothing, bf16 autocast, channels_last, cudnn.benchmark) on one repeated synthetic batch at 224 px
(data loading excluded), for the zoo's decoded ``mb-29m`` and ``r50`` and torchvision's
``efficientnet_b0`` and ``resnet50``. MACs come from ``torch.utils.flop_counter`` (FLOPs / 2) for all
four alike; the per-MAC ratio (images/s x MACs of ours over the same product of the torchvision model
of the same block family) is the target (>= 1.0).

Part 2 trains a CIFAR-100-shaped FakeData set (100 classes, 32 px) for two epochs through ``train.train``
with AMP + channels_last + torch.compile, proving they work together.

Without CUDA both parts run a small CPU functional check instead and say so; their numbers are not targets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from deepmad_evo import train as T  # noqa: E402
from deepmad_evo.io import atomic_write_text  # noqa: E402
from deepmad_evo.models import get_genotype  # noqa: E402

PAIRS = (("mb-29m", "efficientnet_b0"), ("r50", "resnet50"))  # ours, torchvision model of the same family


class RepeatBatch:
    """A 'loader' yielding the same device batch ``steps`` times: measures the step, not the data."""

    def __init__(self, images, targets, steps):
        self.images, self.targets, self.steps = images, targets, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        return ((self.images, self.targets) for _ in range(self.steps))


def macs_of(model: torch.nn.Module, image_size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops() // 2


def build(name: str, config: T.TrainConfig) -> torch.nn.Module:
    if name in ("efficientnet_b0", "resnet50"):
        import torchvision

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return getattr(torchvision.models, name)(weights=None, num_classes=1000)
    return T.make_model(get_genotype(name), 1000, config)


def throughput(name: str, config: T.TrainConfig, batch: int, image_size: int, warmup: int, steps: int) -> dict:
    """images/s of ``steps`` timed training steps after ``warmup`` untimed ones (cudnn autotune, compile)."""
    runtime = T.setup_runtime(config)
    model = build(name, config)
    macs = macs_of(model, image_size)
    model = T.prepare_model(model.train(), config, runtime)
    optimizer, scheduler = T.build_optimizer(model, config, steps_per_epoch=warmup + steps)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    trained = torch.compile(model) if config.compile else model
    images = torch.randn(batch, 3, image_size, image_size, device=runtime.device)
    targets = torch.randint(0, 1000, (batch,), device=runtime.device)

    def run(n):
        T.train_one_epoch(trained, None, optimizer, scheduler, scaler, RepeatBatch(images, targets, n), criterion,
                          None, 1000, config, runtime, lambda *a: None)

    run(warmup)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(steps)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"model": name, "images_per_s": batch * steps / seconds, "macs": macs, "batch": batch,
              "image_size": image_size, "device": str(runtime.device), "amp": str(runtime.amp_dtype or "off"),
              "compile": config.compile}
    if runtime.device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    del model, trained, optimizer
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def cifar_shaped_run(config: T.TrainConfig, out: Path) -> dict:
    """Two epochs of train.train on 100-class 32 px FakeData with the given AMP/compile settings."""
    data = T.build_data(config)
    events = []
    started = time.perf_counter()
    result = T.train(T.make_model(get_genotype("b0"), data.num_classes, config), config, data, out,
                     callback=events.append)
    return {"seconds": time.perf_counter() - started, "device": events[0].info["device"],
            "amp": events[0].info["amp"], "compile": config.compile, "epochs": result.history}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps (cudnn autotune, compile)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the throughput models too")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args()
    console = Console()
    cuda = torch.cuda.is_available()
    base = T.load_train_config("imagenet").with_overrides(compile=args.compile, device="auto")
    if cuda:
        console.print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
        batch, size, warmup, steps = args.batch_size, 224, args.warmup, args.steps
    else:
        console.print("[yellow]no CUDA device: GPU throughput NOT measured. Running a CPU functional check "
                      "(64 px, batch 4, 2 steps); its numbers are not the targets.[/]")
        batch, size, warmup, steps = 4, 64, 1, 2
        base = base.with_overrides(compile=False)

    rows = {}
    for ours, theirs in PAIRS:
        for name in (ours, theirs):
            rows[name] = throughput(name, base, batch, size, warmup, steps)
    table = Table(title=f"training throughput, {size} px, batch {batch}, "
                        f"{rows[PAIRS[0][0]]['device']} AMP {rows[PAIRS[0][0]]['amp']}"
                        f"{', compiled' if base.compile else ''}", title_justify="left", header_style="bold")
    for column in ("model", "GMACs", "images/s", "GMACs/s", "per-MAC vs torchvision"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for ours, theirs in PAIRS:
        ratio = (rows[ours]["images_per_s"] * rows[ours]["macs"]) / (rows[theirs]["images_per_s"] * rows[theirs]["macs"])
        rows[ours]["per_mac_ratio_vs"] = {theirs: ratio}
        for name in (ours, theirs):
            r = rows[name]
            table.add_row(name if name == theirs else f"DeepMAD {name}", f"{r['macs'] / 1e9:.3f}",
                          f"{r['images_per_s']:,.1f}", f"{r['images_per_s'] * r['macs'] / 1e9:,.1f}",
                          f"{ratio:.2f}x" if name == ours else "1.00x")
    console.print(table)

    with tempfile.TemporaryDirectory() as tmp:
        overrides = dict(dataset="fake", image_size=32, eval_crop=1.0, fake_classes=100, crop="padded",
                         auto_augment="cifar10", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                         weight_decay=5e-4, epochs=2, warmup_epochs=1, log_every=50)
        if cuda:
            cifar_cfg = base.with_overrides(fake_images=10_000, fake_val_images=2_000, batch_size=256, workers=8,
                                            compile=True, amp=True, channels_last=True, **overrides)
        else:
            cifar_cfg = base.with_overrides(fake_images=32, fake_val_images=16, batch_size=16, workers=0,
                                            compile=False, **overrides)
        cifar = cifar_shaped_run(cifar_cfg, Path(tmp) / "cifar")
    last = cifar["epochs"][-1]
    console.print(f"CIFAR-100-shaped FakeData (32 px, 100 classes), decoded b0, {cifar['device']}, AMP {cifar['amp']}, "
                  f"compile {cifar['compile']}, channels_last {cifar_cfg.channels_last and cuda}: "
                  f"{len(cifar['epochs'])} epochs in {cifar['seconds']:.1f} s, train loss "
                  f"{cifar['epochs'][0]['train_loss']:.3f} → {last['train_loss']:.3f}, val loss {last['val_loss']:.3f}, "
                  f"{last['images_per_s']:,.0f} img/s in the last epoch")
    if not cuda:
        console.print("[yellow]CPU functional check only: the GPU targets were not measured on this machine.[/]")
    if args.json:
        atomic_write_text(args.json, json.dumps({"throughput": rows, "cifar_shaped": cifar, "cuda": cuda}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
