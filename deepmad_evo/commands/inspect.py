"""`inspect GENOTYPE`: score a genotype (run directory, file, text form, zoo name) or a traced nn.Module."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.markup import escape

from ..config import parse_quantity
from ..costs import CONVENTIONS
from ..models import list_models, recorded_design, resolve_genotype
from ..objective import DEFAULT_BETA
from ..problem import Budget
from ..render import print_report
from ..report import genotype_report
from ..io import dumps_json
from ..limits import arg_float, arg_image_side

# Below this share of its MACs in the convolution chain, a traced model is mostly something else
# (attention, MLPs) and the DeepMAD entropy describes only a small part of it.
CONV_SHARE_NOTICE = 0.5


def add_parser(sub) -> None:
    p = sub.add_parser(
        "inspect", help="score a genotype and show its per-stage table (entropy, ρ, MACs, params, checks)",
        description="Score GENOTYPE with the DeepMAD objective and show per stage: block, channels, kernel, stride, "
        "depth, output side, entropy term, ρ of the prefix, MACs and params. A search result (run directory or its "
        "genotype.json) and a zoo name are checked against the cost convention and budgets they were designed "
        "under unless --convention or a budget is given. Budgets are MACs (the paper's 'FLOPs').")
    p.add_argument("path", metavar="GENOTYPE",
                   help="run directory, genotype JSON, text form, reference structure file, zoo name "
                        "(see `presets`), or a module to trace: torchvision:<name>, timm:<name>, or package.module:callable with --allow-code")
    p.add_argument("--allow-code", action="store_true",
                   help="allow GENOTYPE = package.module:callable, which imports that module and calls the function "
                        "(runs arbitrary code; off by default; torchvision:<name> and timm:<name> need no flag)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--convention", choices=CONVENTIONS, default=None,
                   help="cost convention (default: the one recorded with the genotype, else torch)")
    p.add_argument("--image-size", type=arg_image_side, default=None, help="override the image size")
    p.add_argument("--alpha", type=arg_float, nargs="+", default=None,
                   help="per-segment entropy weights (default: recorded, else 1 … 1 8)")
    p.add_argument("--beta", type=arg_float, default=None, help=f"depth-penalty weight (default: recorded, else {DEFAULT_BETA:g})")
    p.add_argument("--budget", default=None, help="MAC budget to check, e.g. 4.5G (replaces the recorded budgets)")
    p.add_argument("--params", default=None, help="parameter budget to check, e.g. 29M (replaces the recorded budgets)")
    p.add_argument("--rho", type=arg_float, default=None, help="effectiveness bound ρ0 to check (replaces the recorded budgets)")
    p.add_argument("--latency", default=None, help="latency budget to check, e.g. 5ms (needs --latency-table)")
    p.add_argument("--latency-table", default=None, metavar="TABLE",
                   help="latency table from `run.py profile`: show the predicted latency per stage and in total")


def budget_from_args(args: argparse.Namespace) -> Budget | None:
    from ..latency.table import parse_time

    latency = None if args.latency is None else parse_time(args.latency, "--latency")
    if latency is not None and args.latency_table is None:
        raise ValueError("--latency: expected --latency-table TABLE (written by `run.py profile`) to predict it from")
    if args.budget is None and args.params is None and args.rho is None and latency is None:
        # A table alone: show predicted latencies, check nothing.
        return None if args.latency_table is None else Budget(rho=None, monotone=False, latency_table=args.latency_table)
    return Budget(rho=args.rho,
                  macs=None if args.budget is None else parse_quantity(args.budget, "--budget"),
                  params=None if args.params is None else parse_quantity(args.params, "--params"),
                  latency=latency, latency_table=args.latency_table)


def run(args: argparse.Namespace, console) -> int:
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size: expected a positive integer, got {args.image_size}")
    budget = budget_from_args(args)
    notes = []
    if _is_module_spec(args.path) and not _exists(args.path) and args.path not in list_models():
        report = _traced(args, budget)
        share = 1.0 - report["classifier"]["macs"] / report["macs"] if report["macs"] else 0.0
        if share < CONV_SHARE_NOTICE:
            notes.append(f"note: {args.path} is mostly outside what the DeepMAD analysis covers: its convolution chain "
                         f"({report['layers']} layer{'s' if report['layers'] != 1 else ''}) holds {share:.1%} of its "
                         "MACs; the entropy, ρ and depth penalty describe that chain only")
    else:
        genotype = resolve_genotype(args.path, image_size=args.image_size)
        design = recorded_design(args.path) or {}
        convention = args.convention or design.get("convention") or "torch"
        alpha = args.alpha if args.alpha is not None else design.get("alpha")
        beta = args.beta if args.beta is not None else design.get("beta", DEFAULT_BETA)
        if design and all(v is None for v in (args.budget, args.params, args.rho, args.latency)):
            budget = Budget(rho=design.get("rho"), macs=design.get("macs"), params=design.get("params"),
                            latency_table=args.latency_table)
            what = design.get("origin") or (f"preset {design['preset']}" if design.get("preset") else "its search")
            notes.append(f"checked against the budgets recorded with the genotype ({what}, {convention} convention); "
                         "pass --budget/--params/--rho or --convention to check others")
        report = genotype_report(genotype, alpha, beta, convention, budget)
    if args.json:
        # Plain stdout: machine-readable, no rich markup or wrapping.
        print(dumps_json(report))
        return 0
    print_report(console, report, title=escape(str(args.path)))
    for line in notes:
        console.print(f"[dim]{escape(line)}[/]")
    return 0


def _traced(args: argparse.Namespace, budget) -> dict:
    """Report of a live module traced on a dummy input (imports torch only on this path)."""
    if args.latency_table is not None:
        raise ValueError(f"--latency-table: latency is predicted for genotypes (the decoder's ops); "
                         f"a traced module ({args.path}) is not covered")
    if args.convention not in (None, "torch"):
        raise ValueError(f"--convention: a traced module is counted from the live module (torch), got {args.convention!r}")
    from ..trace import module_report

    beta = DEFAULT_BETA if args.beta is None else args.beta
    return module_report(args.path, 224 if args.image_size is None else args.image_size, args.alpha, beta, budget,
                         allow_code=args.allow_code)


def _is_module_spec(text: str) -> bool:
    """``prefix:name`` with identifier parts: what ``trace.load_module`` takes (no torch import here)."""
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text.strip()) is not None


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False
