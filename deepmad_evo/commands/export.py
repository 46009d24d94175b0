"""`export GENOTYPE --format onnx|torchscript|state_dict --out PATH`: write the decoded module and check the file."""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from pathlib import Path

from ..io import atomic_path
from ..models import resolve_genotype

FORMATS = ("onnx", "torchscript", "state_dict")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the decoded network (ONNX, TorchScript or a state_dict), checked")
    p.add_argument("genotype", help="genotype JSON, text form, reference structure file, or zoo name")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--out", required=True, help="file to write (replaced atomically)")
    p.add_argument("--image-size", type=int, default=None, help="example input side (default: the genotype's)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the genotype's)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the check input")


def _close(a, b) -> float:
    return float((a - b).abs().max())


def export(genotype, fmt: str, out: Path, num_classes: int | None = None, opset: int = 17, seed: int = 0) -> str:
    """Write the decoded module of ``genotype`` to ``out`` in ``fmt`` and check the written file.

    Returns:
        One line describing the check that passed.

    Raises:
        ValueError: when the format cannot be written here or the check fails (the old file, if any, is kept).
    """
    import torch

    from ..model import build_model

    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    torch.manual_seed(seed)
    model = build_model(genotype, num_classes).eval()
    x = torch.randn(2, genotype.in_channels, genotype.image_size, genotype.image_size,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # The TorchScript-based exporters warn that they are deprecated; the files they write are checked below.
        warnings.simplefilter("ignore")
        if fmt == "state_dict":
            torch.save(model.state_dict(), tmp)
            fresh = build_model(genotype, num_classes).eval()
            fresh.load_state_dict(torch.load(tmp, weights_only=True), strict=True)
            with torch.no_grad():
                err = _close(fresh(x), expected)
            what = f"reloaded into a fresh module (strict); max |Δ| {err:.1e}"
        elif fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, x[:1])
            traced.save(str(tmp))
            with torch.no_grad():
                err = _close(torch.jit.load(str(tmp))(x), expected)
            what = f"torch.jit.load output vs eager on a batch of 2: max |Δ| {err:.1e}"
        else:
            what = _onnx(model, x, expected, tmp, opset)
            err = 0.0
        if not err <= 1e-4 * max(1.0, float(expected.abs().max())):
            raise ValueError(f"--format {fmt}: the written file disagrees with the module (max |Δ| {err:.3g})")
    return what


def _onnx(model, x, expected, tmp: Path, opset: int) -> str:
    import torch

    dynamo = importlib.util.find_spec("onnxscript") is not None
    kwargs = {"input_names": ["image"], "output_names": ["logits"], "opset_version": opset}
    if dynamo:
        torch.onnx.export(model, (x[:1],), str(tmp), dynamo=True, external_data=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, **kwargs)
    else:
        torch.onnx.export(model, (x[:1],), str(tmp), dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, **kwargs)
    if importlib.util.find_spec("onnx") is None:
        return "written; not checked: the onnx package is not installed (pip install onnx to check ONNX files)"
    import onnx

    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto, full_check=True)
    what = f"onnx.load + onnx.checker passed (opset {opset}, {len(proto.graph.node)} nodes)"
    if importlib.util.find_spec("onnxruntime") is None:
        return what + "; outputs not compared (onnxruntime not installed)"
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    err = _close(got, expected)
    if not err <= 1e-4 * max(1.0, float(expected.abs().max())):
        raise ValueError(f"--format onnx: onnxruntime output disagrees with the module (max |Δ| {err:.3g})")
    return what + f"; onnxruntime vs eager: max |Δ| {err:.1e}"


def run(args: argparse.Namespace, console) -> int:
    for name, value, low in (("--image-size", args.image_size, 1), ("--num-classes", args.num_classes, 1),
                             ("--opset", args.opset, 7)):
        if value is not None and value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out: {out} is a directory; expected a file path")
    genotype = resolve_genotype(args.genotype, image_size=args.image_size)
    what = export(genotype, args.fmt, out, args.num_classes, args.opset, args.seed)
    console.print(f"wrote [bold]{out}[/] ({args.fmt}, {out.stat().st_size:,} bytes): {what}")
    return 0
