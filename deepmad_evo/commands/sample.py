"""`sample`: N random networks at one MAC and parameter budget, spread evenly over ρ (the Fig. 2 population)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_search_options, resolve_config


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="random networks at one budget, stratified over rho (for `study`)",
                       description="Draw N random genotypes whose MACs and params are both within --tolerance below "
                                   "the budgets, one per equal-width stratum of --rho-range; also search the DeepMAD "
                                   "design at the config's rho0 for the same budgets. Writes DIR/index.json, "
                                   "DIR/genotypes/*.json and DIR/coverage.png.")
    add_search_options(p, config_help="preset name (digits, c100-r20, r18, mb-29m, …) or TOML path; default mb-29m")
    p.add_argument("--n", type=int, default=65, help="number of networks = number of rho strata (default 65, as Fig. 2)")
    p.add_argument("--rho-range", nargs=2, type=float, default=(0.1, 1.5), metavar=("MIN", "MAX"),
                   help="rho range to cover (default 0.1 1.5)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="MACs and params each within this fraction below the budgets (default 0.05)")
    p.add_argument("--max-rounds", type=int, default=200, help="give up after this many rounds of 1024 random vectors")
    p.add_argument("--out", default=None, help="sample directory (default runs/sample-<config>-n<N>-s<seed>)")
    p.add_argument("--force", action="store_true", help="overwrite a sample directory that holds another sample")


def run(args: argparse.Namespace, console) -> int:
    from rich.markup import escape

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..search import run_search
    from ..studies.plots import plot_coverage
    from ..studies.sampling import INDEX, sample_networks, write_samples

    cfg = resolve_config(args)  # --rho is the DeepMAD design's rho0; --seed seeds the sampling and the search
    if args.max_rounds < 1:
        raise ValueError(f"--max-rounds: expected an integer >= 1, got {args.max_rounds}")
    out = Path(args.out) if args.out else Path("runs") / f"sample-{cfg.name}-n{args.n}-s{cfg.search.seed}"
    request = {"config": cfg.to_dict(), "n": args.n, "rho_range": [float(v) for v in args.rho_range],
               "tolerance": float(args.tolerance)}
    previous = _previous(out / INDEX)
    if previous is not None and not args.force:
        if {k: previous.get(k) for k in request} == request:
            console.print(f"[dim]{out} already holds this sample (same config, n, range, tolerance); "
                          "showing it (--force to redraw)[/]")
            _table(console, previous)
            return 0
        raise ValueError(f"--out: {str(out)!r} holds another sample; choose another --out or pass --force")
    o = cfg.objective
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[cands]} candidates"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("rho strata filled", total=args.n, cands="0")

        def callback(info):
            progress.update(task, completed=info["filled"], cands=f"{info['candidates']:,}")

        result = sample_networks(cfg.search_space(), cfg.budget, args.n, args.rho_range, tolerance=args.tolerance,
                                 alpha=o.alpha, beta=o.beta, convention=o.convention, seed=cfg.search.seed,
                                 max_rounds=args.max_rounds, callback=callback)
        progress.add_task(f"DeepMAD design at rho0 = {cfg.budget.rho:g}", total=None, cands="-")
        design = run_search(cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta, convention=o.convention,
                            settings=cfg.search_settings(), seed=cfg.search.seed)
    ev = design.evaluation
    reference = (design.genotype, {"rho0": cfg.budget.rho, "rho": ev.rho, "entropy": ev.entropy,
                                   "objective": design.objective, "macs": float(ev.macs), "params": float(ev.params)})
    index_path = write_samples(result, out, cfg.to_dict(), reference)
    record = json.loads(index_path.read_text())
    edges = [result.rho_range[0] + (result.rho_range[1] - result.rho_range[0]) * k / args.n for k in range(args.n + 1)]
    plot_coverage([s.rho for s in result.samples], edges, out / "coverage.png", reference=cfg.budget.rho,
                  entropies=[s.entropy for s in result.samples],
                  title=f"{args.n} networks at {cfg.budget.macs / 1e6:.4g} MMACs / {cfg.budget.params / 1e6:.4g} M "
                        f"params (−{100 * args.tolerance:g} %), one per rho stratum")
    _table(console, record)
    console.print(f"{result.candidates:,} candidates in {result.rounds} rounds → [bold]{escape(str(index_path))}[/], "
                  f"{out / 'genotypes'}/, {out / 'coverage.png'}")
    return 0


def _previous(path: Path):
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _table(console, record: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{record.get('n')} sampled networks", title_justify="left", header_style="bold")
    for column in ("name", "rho", "entropy", "objective", "MACs", "params"):
        table.add_column(column, justify="right")
    rows = list(record.get("samples", []))
    if isinstance(record.get("reference"), dict):
        rows.append(record["reference"])
    for s in rows:
        table.add_row(s["name"], f"{s['rho']:.3f}", f"{s['entropy']:.1f}", f"{s['objective']:.1f}",
                      f"{s['macs']:,.0f}", f"{s['params']:,.0f}")
    console.print(table)
