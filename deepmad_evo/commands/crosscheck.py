"""`cross-check [GENOTYPE]`: compare a GA solution with the continuous relaxation's optimum (SLSQP)."""

from __future__ import annotations

import argparse
import json
import math

from ..config import load_config, preset_names
from ..costs import CONVENTIONS
from ..genotype import BLOCKS, atomic_write_text
from ..models import resolve_genotype
from ..render import si
from ..space import Template


def add_parser(sub) -> None:
    p = sub.add_parser("cross-check", help="cross-check a GA solution against the continuous relaxation (SLSQP)",
                       description="Solve the continuous relaxation of the same objective and constraints (real "
                       "widths and depths) with SLSQP and exact gradients, and show the GA's genotype next to it with "
                       "the gap; a better rounding of the relaxation replaces the GA's answer.")
    p.add_argument("genotype", nargs="?", default=None,
                   help="run directory, genotype JSON, text form, reference structure file or zoo name to check; "
                        "without it the config's search runs first")
    p.add_argument("--config", default=None,
                   help="preset name or TOML path (default: the preset whose template matches GENOTYPE, else mb-29m)")
    p.add_argument("--budget", default=None, help="MAC budget, e.g. 4.5G")
    p.add_argument("--params", default=None, help="parameter budget, e.g. 29M")
    p.add_argument("--rho", type=float, default=None, help="effectiveness bound rho0 (default from the config)")
    p.add_argument("--block", choices=BLOCKS, default=None, help="use this block family in every stage")
    p.add_argument("--image-size", type=int, default=None, help="input image side (default from the config)")
    p.add_argument("--seed", type=int, default=None, help="seed of the search and of the random starts")
    p.add_argument("--convention", choices=CONVENTIONS, default=None, help="cost convention (default from the config)")
    p.add_argument("--starts", type=int, default=3, help="random feasible SLSQP starts besides the GA's (default 3)")
    p.add_argument("--kernels", choices=("fixed", "each"), default="fixed",
                   help="fixed: the GA's kernels; each: also every per-stage kernel combination (slow)")
    p.add_argument("--depth-nodes", type=int, default=0,
                   help="also bound the problem with integral depths by branch and bound over at most N SLSQP nodes")
    p.add_argument("--tolerance", type=float, default=0.01, help="gap above which to warn (fraction, default 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--out", default=None, help="also write the JSON record to this file")


def resolve(args: argparse.Namespace):
    """(config, genotype or None) from the command line."""
    from .search import resolve_config

    genotype = None if args.genotype is None else resolve_genotype(args.genotype)
    if genotype is not None and args.config is None:
        template = Template.of(genotype)
        matching = [n for n in preset_names() if load_config(n).template == template]
        if not matching:
            raise ValueError(f"genotype: no preset has its template ({_template_text(template)}); "
                             "pass --config with a TOML whose [template] matches")
        args = argparse.Namespace(**{**vars(args), "config": matching[0]})
    cfg, _ = resolve_config(args)
    if genotype is not None and Template.of(genotype) != cfg.template:
        raise ValueError(f"genotype: its template ({_template_text(Template.of(genotype))}) differs from the "
                         f"config's ({_template_text(cfg.template)}); pass a matching --config")
    if args.starts < 0:
        raise ValueError(f"--starts: expected an integer >= 0, got {args.starts}")
    if args.depth_nodes < 0:
        raise ValueError(f"--depth-nodes: expected an integer >= 0, got {args.depth_nodes}")
    if not 0 < args.tolerance < 1:
        raise ValueError(f"--tolerance: expected a fraction in (0, 1), got {args.tolerance}")
    return cfg, genotype


def _template_text(t: Template) -> str:
    blocks = ",".join(sorted(set(t.blocks)))
    return f"{blocks}, strides {list(t.strides)}, head {t.head}, image {t.image_size}"


def cross_check_with_progress(source, cfg, console, *, random_starts: int = 3, kernels: str = "fixed",
                              depth_nodes: int = 0, tolerance: float = 0.01):
    """Run ``relax.cross_check`` for a SearchResult or genotype under ``cfg`` with a live status line."""
    from ..relax import cross_check

    o = cfg.objective
    with console.status("cross-check: SLSQP on the continuous relaxation…") as status:
        def callback(info):
            what = info["origin"] if info["phase"] == "depth-bound" else f"SLSQP run {info['done']} ({info['origin']})"
            status.update(f"cross-check: {what} → {info['objective']:.2f}"
                          + ("" if info["feasible"] else " [red]infeasible[/]"))

        return cross_check(source, cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta,
                           convention=o.convention, seed=cfg.search.seed, random_starts=random_starts,
                           kernels=kernels, depth_nodes=depth_nodes, tolerance=tolerance, callback=callback)


def print_cross_check(console, cc, title: str = "cross-check", returned: bool = False) -> None:
    """Both solutions side by side (per stage), the gap, the SLSQP runs and every warning.

    Args:
        console: the rich console.
        cc: a ``relax.CrossCheck``.
        title: table title.
        returned: the caller returns the better genotype (say so when the rounding wins).
    """
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for col, justify in (("stage", "left"), ("block", "left"), ("GA  k · out/btn · depth", "right"),
                         ("relaxed  out/btn · depth", "right"), ("rounded  k · out/btn · depth", "right")):
        table.add_column(col, justify=justify)
    ga, rounded, relaxed = cc.ga_genotype, cc.rounded_genotype, cc.relaxed_point

    def discrete(g, i):
        if g is None:
            return "-"
        if i < 0:
            return f"k{g.stem.k} · {g.stem.out}"
        st = g.stages[i]
        return f"k{st.k} · {st.out}/{st.btn} · {st.depth}"

    def real(i):
        if relaxed is None:
            return "-"
        if i < 0:
            return f"{relaxed['stem']:.1f}"
        return f"{relaxed['out'][i]:.1f}/{relaxed['btn'][i]:.1f} · {relaxed['depth'][i]:.2f}"

    table.add_row("stem", "conv", discrete(ga, -1), real(-1), discrete(rounded, -1))
    for i, st in enumerate(ga.stages):
        table.add_row(f"stage{i + 1}", st.block, discrete(ga, i), real(i), discrete(rounded, i))
    table.add_section()
    costs = cc.relaxed_costs or {}

    def cell(v, fmt=None):
        return "-" if v is None or not math.isfinite(v) else (fmt.format(v) if fmt else si(v))

    table.add_row("objective", "", cell(cc.ga_objective, "{:.2f}"), cell(cc.relaxed_objective, "{:.2f}"),
                  cell(cc.rounded_objective, "{:.2f}"), style="bold")
    for name, label, fmt in (("macs", "MACs", None), ("params", "params", None), ("rho", "ρ", "{:.4f}")):
        g = getattr(cc.ga_evaluation, name) if cc.ga_evaluation is not None else None
        r = getattr(cc.rounded_evaluation, name) if cc.rounded_evaluation is not None else None
        table.add_row(label, "", cell(g, fmt), cell(costs.get(name), fmt), cell(r, fmt))
    console.print(table)

    if math.isfinite(cc.gap):
        colour = "green" if cc.gap <= cc.tolerance else "yellow"
        split = (f" = depths {cc.depth_gap:.2%} + widths {cc.width_gap:.2%}" if math.isfinite(cc.depth_gap) else "")
        console.print(f"gap (relaxed − GA)/relaxed [bold {colour}]{cc.gap:.2%}[/]{split}   "
                      f"(tolerance {cc.tolerance:.2%}; relaxed with the GA's depths {cc.depth_fixed_objective:.2f})")
    if cc.depth_bound:
        b = cc.depth_bound
        state = "complete" if b["complete"] else f"{b['open']} nodes left open"
        gap = f"gap to the best discrete genotype [bold]{b['gap']:.2%}[/]" if "gap" in b else "no discrete genotype"
        console.print(f"integral-depth bound {b['bound']:.2f}: {gap} ({b['nodes']} SLSQP nodes, {state}, "
                      f"{b['pruned_infeasible']} pruned as infeasible)")
    nodes = f" + {cc.depth_bound['nodes']} branch-and-bound nodes" if cc.depth_bound else ""
    console.print(f"SLSQP {len(cc.starts)} runs{nodes} in {cc.solver_seconds:.2f} s, cross-check {cc.seconds:.2f} s")

    runs = Table(header_style="bold", box=None, padding=(0, 1))
    for col in ("run", "kernels", "start", "end", "iterations", "feasible", "status"):
        runs.add_column(col, justify="left" if col in ("run", "kernels", "status") else "right")
    for r in cc.starts:
        runs.add_row(r.origin, "/".join(map(str, r.kernels)), f"{r.start_objective:.2f}", f"{r.objective:.2f}",
                     str(r.iterations), "[green]yes[/]" if r.feasible else f"[red]no ({r.violation:.1e})[/]",
                     r.message if r.converged else f"[yellow]{r.message}[/]")
    console.print(runs)
    for w in cc.warnings:
        if not (cc.improved and w.startswith("the rounded relaxation")):
            console.print(f"[bold yellow]warning:[/] {w}")
    if cc.improved:
        console.print(f"[bold yellow]warning:[/] [bold]the rounded relaxation beats the GA[/] "
                      f"({cc.rounded_objective:.2f} > {cc.ga_objective:.2f})"
                      + ("; this run returns it" if returned else "") + f": [cyan]{cc.rounded_genotype.to_text()}[/]")


def run(args: argparse.Namespace, console) -> int:
    cfg, genotype = resolve(args)
    if args.json:
        from rich.console import Console

        progress = Console(stderr=True, highlight=False)  # stdout carries the JSON object only
    else:
        progress = console
    if genotype is None:
        from .search import search_with_progress

        source = search_with_progress(cfg, progress)
    else:
        source = genotype
    cc = cross_check_with_progress(source, cfg, progress, random_starts=args.starts, kernels=args.kernels,
                                   depth_nodes=args.depth_nodes, tolerance=args.tolerance)
    record = {"config": cfg.to_dict(), "genotype": cc.ga_genotype.to_text(), **cc.to_dict()}
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    if args.json:
        print(json.dumps(record))
        return 0
    print_cross_check(console, cc, title=f"{cfg.name}: GA vs continuous relaxation")
    if args.out:
        console.print(f"record → [bold]{args.out}[/]")
    return 0
