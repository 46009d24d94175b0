"""Speed of decoded zoo networks next to torchvision's: CPU forward latency, GPU training throughput.

    python benchmarks/forward.py                      # CPU section; GPU section too when CUDA is available
    python benchmarks/forward.py --iters 5 --compile  # more iterations; torch.compile on the GPU
    python benchmarks/forward.py --smoke              # run the GPU training-step code on CPU, tiny batch

CPU: eval-mode forward latency (fp32, inference_mode) at each --batches size, median of --iters
timed runs after one warm-up. GPU: training steps (forward, backward, SGD) in bf16 autocast with
channels_last, optionally torch.compile'd, images/s side by side with torchvision resnet50 and
efficientnet_b0. The "per MAC" ratio compares MAC throughput (images/s × MACs per image): above 1,
the network executes its MACs faster than the reference executes its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402

from deepmad_evo.model import live_costs  # noqa: E402
from deepmad_evo.models import get_model  # noqa: E402

ZOO = ("mb-29m", "r50")
REFERENCES = ("resnet50", "efficientnet_b0")


def make(name: str) -> torch.nn.Module:
    if name in REFERENCES:
        return torchvision.models.get_model(name, weights=None)
    return get_model(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_latency(model: torch.nn.Module, batch: int, iters: int, size: int = 224) -> list[float]:
    """Seconds per forward of a ``batch`` on CPU (eval, inference_mode), one warm-up excluded."""
    model.eval()
    x = torch.randn(batch, 3, size, size)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(iters):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return times


def train_throughput(model: torch.nn.Module, batch: int, steps: int, device: torch.device, compile_model: bool,
                     size: int = 224, warmup: int = 3) -> float:
    """Images/s of SGD training steps in bf16 autocast with channels_last inputs and weights."""
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(step_model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):  # includes compilation when --compile
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--iters", type=int, default=3, help="timed CPU forwards per batch size")
    parser.add_argument("--cpu-models", nargs="+", default=list(ZOO) + list(REFERENCES))
    parser.add_argument("--gpu-batch", type=int, default=128)
    parser.add_argument("--gpu-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile the GPU training step")
    parser.add_argument("--smoke", action="store_true", help="run the GPU section's code on CPU (batch 2, 2 steps)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": [], "gpu": []}

    macs = {}
    for name in dict.fromkeys(args.cpu_models + list(ZOO) + list(REFERENCES)):
        _, macs[name] = live_costs(make(name), 224)

    print(f"CPU forward latency (fp32, eval, {torch.get_num_threads()} threads, 224x224, median of {args.iters})")
    print(f"{'model':16s} {'GMACs':>7s} " + " ".join(f"{'b' + str(b) + ' ms':>10s} {'img/s':>7s}" for b in args.batches)
          + f" {'GMAC/s':>8s}")
    for name in args.cpu_models:
        model = make(name)
        row = {"model": name, "gmacs": macs[name] / 1e9}
        cells = []
        for b in args.batches:
            t = statistics.median(cpu_latency(model, b, args.iters))
            row[f"b{b}_ms"] = 1e3 * t
            row[f"b{b}_img_s"] = b / t
            cells.append(f"{1e3 * t:10.1f} {b / t:7.1f}")
        b = max(args.batches)
        row["gmac_s"] = row[f"b{b}_img_s"] * macs[name] / 1e9
        results["cpu"].append(row)
        print(f"{name:16s} {macs[name] / 1e9:7.3f} " + " ".join(cells) + f" {row['gmac_s']:8.1f}", flush=True)

    if torch.cuda.is_available() or args.smoke:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
        batch, steps = (2, 2) if args.smoke else (args.gpu_batch, args.gpu_steps)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
        print(f"\ntraining throughput on {label}: bf16 autocast, channels_last, batch {batch}, "
              f"{'torch.compile' if args.compile else 'eager'}")
        speed = {}
        for name in list(ZOO) + list(REFERENCES):
            speed[name] = train_throughput(make(name), batch, steps, device, args.compile)
            print(f"{name:16s} {speed[name]:9.1f} img/s  {speed[name] * macs[name] / 1e12:7.2f} TMAC/s", flush=True)
        for ours in ZOO:
            for ref in REFERENCES:
                ratio = speed[ours] / speed[ref]
                per_mac = (speed[ours] * macs[ours]) / (speed[ref] * macs[ref])
                results["gpu"].append({"model": ours, "reference": ref, "img_s": speed[ours], "ref_img_s": speed[ref],
                                       "ratio": ratio, "ratio_per_mac": per_mac, "device": label,
                                       "compile": args.compile, "batch": batch})
                print(f"{ours} vs {ref}: {ratio:.3f}x images/s, {per_mac:.3f}x per MAC")
    else:
        print("\nno CUDA device: GPU training-throughput section skipped (use --smoke to exercise its code on CPU)")
    if args.json:
        from deepmad_evo.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
