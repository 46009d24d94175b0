"""`export GENOTYPE --format onnx|pt2|torchscript|state_dict --out PATH`: write the decoded module and check the file."""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

from rich.markup import escape

from ..io import atomic_path
from ..costs import check_memory
from ..limits import MAX_CLASSES, arg_image_side, arg_int, arg_seed, check_output
from ..models import resolve_genotype

FORMATS = ("onnx", "pt2", "torchscript", "state_dict")
# torch.testing.assert_close-style tolerances: |got - expected| <= ATOL + RTOL·|expected| elementwise.
# float32 kernels of another runtime reorder sums, so a deep net drifts by ~1e-6 relative; a wrong graph
# is off by O(1).
RTOL, ATOL = 1e-4, 1e-5
ONNX_EXTRA = ("onnx", "onnxscript", "onnxruntime")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the decoded network (ONNX, torch.export, TorchScript, state_dict), checked",
                       description="Write the decoded network of GENOTYPE (seeded weights, BN statistics calibrated on "
                       "one random batch) and check the written file: it is loaded back and its outputs are compared "
                       f"with PyTorch's (rtol {RTOL:g}, atol {ATOL:g}).")
    p.add_argument("genotype", help="genotype JSON, text form, reference structure file, zoo name or run directory")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                   help="onnx (needs the onnx extra: pip install 'deepmad-evo[onnx]'), pt2 (torch.export.save), "
                        "torchscript (torch.jit.trace) or state_dict (torch.save of the weights)")
    p.add_argument("--out", required=True, help="file to write (replaced atomically; the old file stays if the check fails)")
    p.add_argument("--image-size", type=arg_image_side, default=None, help="example input side (default: the genotype's)")
    p.add_argument("--num-classes", type=arg_int(1, MAX_CLASSES), default=None, help="classifier outputs (default: the genotype's)")
    p.add_argument("--opset", type=arg_int(7, 99), default=18, help="ONNX opset (default 18)")
    p.add_argument("--seed", type=arg_seed, default=0, help="seed of the weights and the check input (default 0)")


def missing_onnx_extra() -> list[str]:
    """The packages of the ``onnx`` extra that are not installed."""
    return [m for m in ONNX_EXTRA if importlib.util.find_spec(m) is None]


def compare(got, expected, fmt: str) -> float:
    """Check ``got`` against ``expected`` elementwise (assert_close-style); return the max |Δ|.

    Raises:
        ValueError: naming the format and the worst element when they disagree.
    """
    import torch

    got = got.to(expected.dtype)
    if got.shape != expected.shape:
        raise ValueError(f"--format {fmt}: the written file gives outputs of shape {tuple(got.shape)}, "
                         f"expected {tuple(expected.shape)}")
    diff = (got - expected).abs()
    excess = diff - (ATOL + RTOL * expected.abs())
    if not torch.isfinite(got).all() or bool((excess > 0).any()):
        raise ValueError(f"--format {fmt}: the written file disagrees with the module (max |Δ| "
                         f"{float(diff.max()):.3g}, allowed {ATOL:g} + {RTOL:g}·|y|)")
    return float(diff.max())


def calibrate(model, x) -> None:
    """Give every BatchNorm running statistics of a real batch (cumulative average of one pass).

    At initialisation the running statistics are (0, 1), so a deep mobile net's logits are ~1e-12 and any
    comparison is vacuous; after one pass in train mode they are O(1).
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def export(genotype, fmt: str, out: Path, num_classes: int | None = None, opset: int = 18, seed: int = 0,
           progress=None) -> str:
    """Write the decoded module of ``genotype`` to ``out`` in ``fmt`` and check the written file.

    Args:
        progress: optional callable receiving one short line per step (build, write, check).

    Returns:
        One line describing the check that passed.

    Raises:
        ValueError: when the format cannot be written here or the check fails (the old file, if any, is kept).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx" and missing_onnx_extra():
        raise ValueError(f"--format onnx: needs the onnx extra (missing: {', '.join(missing_onnx_extra())}); "
                         "install it with pip install 'deepmad-evo[onnx]'")
    import torch

    from ..model import build_model

    say = progress or (lambda line: None)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(genotype, num_classes)
    gen = torch.Generator().manual_seed(seed)
    shape = (genotype.in_channels, genotype.image_size, genotype.image_size)
    calibrate(model, torch.randn(8, *shape, generator=gen))
    x = torch.randn(2, *shape, generator=gen)
    with torch.no_grad():
        expected = model(x)
    say(f"built and calibrated the module ({time.perf_counter() - t0:.1f} s); writing {fmt}…")
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # The TorchScript-based exporters warn that they are deprecated; the files they write are checked below.
        warnings.simplefilter("ignore")
        if fmt == "state_dict":
            torch.save(model.state_dict(), tmp)
            say("written; reloading into a fresh module…")
            fresh = build_model(genotype, num_classes).eval()
            fresh.load_state_dict(torch.load(tmp, weights_only=True), strict=True)
            with torch.no_grad():
                err = compare(fresh(x), expected, fmt)
            what = "reloaded into a fresh module (strict)"
        elif fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, x[:1])
            traced.save(str(tmp))
            say("written; comparing torch.jit.load's outputs…")
            with torch.no_grad():
                err = compare(torch.jit.load(str(tmp))(x), expected, fmt)
            what = "torch.jit.load output vs eager on a batch of 2"
        elif fmt == "pt2":
            program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            with open(tmp, "wb") as f:  # a file object: the temp name does not end in .pt2
                torch.export.save(program, f)
            say("written; comparing torch.export.load's outputs…")
            with open(tmp, "rb") as f, torch.no_grad():
                err = compare(torch.export.load(f).module()(x), expected, fmt)
            what = "torch.export.load output vs eager on a batch of 2"
        else:
            what, err = _onnx(model, x, expected, tmp, opset, say)
    return f"{what}: max |Δ| {err:.1e} (logits up to {float(expected.abs().max()):.2g}; {time.perf_counter() - t0:.1f} s)"


def _onnx(model, x, expected, tmp: Path, opset: int, say) -> tuple[str, float]:
    import onnx
    import onnxruntime
    import torch

    torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False, verbose=False, input_names=["image"],
                      output_names=["logits"], opset_version=opset, dynamic_shapes=({0: torch.export.Dim("batch")},))
    say("written; checking with onnx.checker and onnxruntime…")
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    err = compare(got, expected, "onnx")
    return f"onnx.checker passed (opset {opset}, {len(proto.graph.node)} nodes); onnxruntime vs eager", err


def run(args: argparse.Namespace, console) -> int:
    for name, value, low in (("--image-size", args.image_size, 1), ("--num-classes", args.num_classes, 1),
                             ("--opset", args.opset, 7)):
        if value is not None and value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    out = check_output(args.out, "--out", kind="file")
    if args.fmt == "onnx":
        from torch.onnx._constants import ONNX_MAX_OPSET, ONNX_MIN_OPSET

        if not ONNX_MIN_OPSET <= args.opset <= ONNX_MAX_OPSET:
            raise ValueError(f"--opset: expected an ONNX opset in [{ONNX_MIN_OPSET}, {ONNX_MAX_OPSET}] "
                             f"(what this torch exports), got {args.opset}")
    genotype = resolve_genotype(args.genotype, image_size=args.image_size)
    check_memory(genotype, batch=2, num_classes=args.num_classes)
    what = export(genotype, args.fmt, out, args.num_classes, args.opset, args.seed,
                  progress=lambda line: console.print(f"[dim]{escape(line)}[/]"))
    console.print(f"wrote [bold]{escape(str(out))}[/] ({args.fmt}, {out.stat().st_size:,} bytes): {what}")
    return 0
