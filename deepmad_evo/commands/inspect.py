"""`inspect PATH`: score a genotype (JSON, text form, TinyNAS structure file) or a traced nn.Module and show the table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import parse_quantity
from ..costs import CONVENTIONS
from ..genotype import load_genotype
from ..objective import DEFAULT_BETA
from ..problem import Budget
from ..render import print_report
from ..report import genotype_report


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="score a genotype file / text form and show its per-stage table")
    p.add_argument("path", help="genotype JSON, text form, reference structure file, or a module to trace: "
                                "torchvision:<name> or package.module:callable")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--convention", choices=CONVENTIONS, default="torch")
    p.add_argument("--image-size", type=int, default=None, help="override the image size")
    p.add_argument("--alpha", type=float, nargs="+", default=None, help="per-segment entropy weights")
    p.add_argument("--beta", type=float, default=DEFAULT_BETA, help=f"depth-penalty weight (default {DEFAULT_BETA:g})")
    p.add_argument("--budget", default=None, help="MAC budget to check, e.g. 4.5G")
    p.add_argument("--params", default=None, help="parameter budget to check, e.g. 29M")
    p.add_argument("--rho", type=float, default=None, help="effectiveness bound rho0 to check")
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
    if ":" in args.path and not Path(args.path).exists():
        report = _traced(args, budget)
    else:
        genotype = load_genotype(args.path, image_size=args.image_size)
        report = genotype_report(genotype, args.alpha, args.beta, args.convention, budget)
    if args.json:
        # Plain stdout: machine-readable, no rich markup or wrapping.
        print(json.dumps(report))
        return 0
    print_report(console, report, title=f"{args.path}")
    return 0


def _traced(args: argparse.Namespace, budget) -> dict:
    """Report of a live module traced on a dummy input (imports torch only on this path)."""
    if args.latency_table is not None:
        raise ValueError(f"--latency-table: latency is predicted for genotypes (the decoder's ops); "
                         f"a traced module ({args.path}) is not covered")
    if args.convention != "torch":
        raise ValueError(f"--convention: a traced module is counted from the live module (torch), got {args.convention!r}")
    from ..trace import module_report

    return module_report(args.path, 224 if args.image_size is None else args.image_size, args.alpha, args.beta, budget)
