"""`cross-check [GENOTYPE]`: compare a GA solution with the continuous relaxation's optimum (SLSQP)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from ..config import load_config, preset_names
from ..io import atomic_write_text, dumps_json
from ..limits import arg_float, arg_int, check_output
from ..models import resolve_genotype
from ..render import print_cross_check
from ..space import Template
from .common import add_search_options, resolve_config
from .progress import cross_check_with_progress, search_with_progress


def add_parser(sub) -> None:
    p = sub.add_parser("cross-check", help="cross-check a GA solution against the continuous relaxation (SLSQP)",
                       description="Solve the continuous relaxation of the same objective and constraints (real "
                       "widths and depths) with SLSQP and exact gradients, and show the GA's genotype next to it with "
                       "the gap; a better rounding of the relaxation replaces the GA's answer.")
    p.add_argument("genotype", nargs="?", default=None, metavar="GENOTYPE",
                   help="run directory, genotype JSON, text form, reference structure file or zoo name to check; "
                        "without it the config's search runs first")
    add_search_options(p, config_help="preset name or TOML path (default: the preset whose template matches "
                                      "GENOTYPE, else mb-29m)")
    p.add_argument("--starts", type=arg_int(0, 10000), default=None,
                   help="random feasible SLSQP starts besides the GA's (default: the config's crosscheck.starts)")
    p.add_argument("--kernels", choices=("fixed", "each"), default="fixed",
                   help="fixed: the GA's kernels; each: also every per-stage kernel combination (slow)")
    p.add_argument("--depth-nodes", type=arg_int(0, 10**7), default=0,
                   help="also bound the problem with integral depths by branch and bound over at most N SLSQP nodes")
    p.add_argument("--bound-gap", type=arg_float, default=None,
                   help="relative-gap stop of that branch and bound: prune nodes within this fraction of the best "
                        "design (default 0.004; 0: the exact tree, far slower)")
    p.add_argument("--tolerance", type=arg_float, default=None,
                   help="gap above which to warn (fraction; default: the config's crosscheck.tolerance)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--out", default=None, help="also write the JSON record to this file")


def resolve(args: argparse.Namespace):
    """(config, genotype or None) from the command line."""
    genotype = None if args.genotype is None else resolve_genotype(args.genotype)
    if genotype is not None and args.config is None:
        template = Template.of(genotype)
        matching = [n for n in preset_names() if load_config(n).template == template]
        if not matching:
            raise ValueError(f"genotype: no preset has its template ({_template_text(template)}); "
                             "pass --config with a TOML whose [template] matches")
        args = argparse.Namespace(**{**vars(args), "config": matching[0]})
    cfg = resolve_config(args)
    if cfg.budget.latency is not None:
        raise ValueError("--latency: the continuous relaxation does not model latency; expected no latency budget "
                         "with cross-check")
    if genotype is not None and Template.of(genotype) != cfg.template:
        raise ValueError(f"genotype: its template ({_template_text(Template.of(genotype))}) differs from the "
                         f"config's ({_template_text(cfg.template)}); pass a matching --config")
    if args.starts is not None and args.starts < 0:
        raise ValueError(f"--starts: expected an integer >= 0, got {args.starts}")
    if args.depth_nodes < 0:
        raise ValueError(f"--depth-nodes: expected an integer >= 0, got {args.depth_nodes}")
    if args.bound_gap is not None and not 0 <= args.bound_gap < 1:
        raise ValueError(f"--bound-gap: expected a fraction in [0, 1), got {args.bound_gap}")
    if args.tolerance is not None and not 0 < args.tolerance < 1:
        raise ValueError(f"--tolerance: expected a fraction in (0, 1), got {args.tolerance}")
    return cfg, genotype


def _template_text(t: Template) -> str:
    blocks = ",".join(sorted(set(t.blocks)))
    return f"{blocks}, strides {list(t.strides)}, head {t.head}, image {t.image_size}"


def run(args: argparse.Namespace, console) -> int:
    cfg, genotype = resolve(args)
    if args.out:
        check_output(args.out, "--out", kind="file")
    if args.json:
        from rich.console import Console

        progress = Console(stderr=True, highlight=False)  # stdout carries the JSON object only
    else:
        progress = console
    if genotype is None:
        source = search_with_progress(cfg, progress)
    else:
        source = genotype
    cc = cross_check_with_progress(source, cfg, progress, random_starts=args.starts, kernels=args.kernels,
                                   depth_nodes=args.depth_nodes, tolerance=args.tolerance,
                                   bound_gap=args.bound_gap)
    record = {"config": cfg.to_dict(), "genotype": cc.ga_genotype.to_text(), **cc.to_dict()}
    if args.out:
        atomic_write_text(args.out, dumps_json(record, indent=1) + "\n")
    if args.json:
        print(dumps_json(record))
        return 0
    print_cross_check(console, cc, title=f"{escape(cfg.name)}: GA vs continuous relaxation")
    if args.out:
        console.print(f"record → [bold]{escape(str(args.out))}[/]")
    return 0
