"""`pareto`: a family of designs across MAC budgets, their trade-off front and a picture."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from ..config import load_config, parse_quantity
from ..latency.table import format_time, parse_time
from ..limits import arg_float, arg_int, arg_seed, check_output
from ..render import si_compact
from .common import pareto_run_dir


def add_parser(sub) -> None:
    p = sub.add_parser("pareto", help="one design per MAC budget (in parallel), the front and a picture",
                       description="Search one network per MAC budget (budgets are MACs, the paper's 'FLOPs') in "
                       "parallel, keep the objective/MACs trade-off front, draw pareto.png and, where they fit the "
                       "preset's template, the authors' published networks. Rerunning resumes.")
    p.add_argument("--budget", nargs="+", default=None, metavar="MACS",
                   help="MAC budgets, e.g. 0.4G 1.8G 4.5G 8.7G 15.4G")
    p.add_argument("--params", nargs="+", default=None, metavar="PARAMS",
                   help="one params budget per --budget, or 'off'; default: the config's params/MACs ratio times each "
                        "budget (the sweep always uses the ratio, or no params with 'off')")
    p.add_argument("--latency", nargs="+", default=None, metavar="TIME",
                   help="latency budgets instead of MAC budgets, e.g. 20ms 50ms 100ms (needs --latency-table): "
                        "the best design per latency budget, latency on the x-axis")
    p.add_argument("--latency-table", default=None, metavar="TABLE",
                   help="latency table written by `run.py profile`; with MAC budgets it adds the predicted latency")
    p.add_argument("--config", default=None, help="preset name (mb-29m, r50, …) or TOML path; default mb-29m")
    p.add_argument("--rho", type=arg_float, default=None, help="effectiveness bound rho0 (default from the config)")
    p.add_argument("--seed", type=arg_seed, default=None, help="run seed (default from the config)")
    p.add_argument("--jobs", type=arg_int(1, 4096), default=None, help="worker processes (default: the usable cores)")
    p.add_argument("--out", default=None, help="run directory (default runs/pareto-<config>-s<seed>-<hash>); "
                                               "rerun the same command to resume")
    p.add_argument("--sweep", nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="also run NSGA-II over this MAC range and compare its front")


def _params(args) -> list[float] | str | None:
    if args.params is None:
        return None
    if len(args.params) == 1 and args.params[0].lower() in ("off", "none"):
        return "off"
    if not args.budget:
        raise ValueError("--params: expected --budget values to go with, got none")
    return [parse_quantity(v, "--params") for v in args.params]


def run(args: argparse.Namespace, console) -> int:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    # Imported here: NSGA-II and scipy.spatial would cost every other command's start-up.
    from ..pareto import SWEEP_LABEL, Sweep, budget_points, latency_points, run_pareto, scaled_params

    if args.latency is not None and args.latency_table is None:
        raise ValueError("--latency: expected --latency-table TABLE (written by `run.py profile`) to predict it from")
    if args.latency is not None and (args.budget or args.params or args.sweep):
        raise ValueError("--latency: a latency run has latency budgets only; expected no --budget, --params or --sweep")
    cfg = load_config(args.config).with_overrides(seed=args.seed, rho=args.rho, latency_table=args.latency_table)
    params = _params(args)
    if args.latency is not None:
        cfg.budget.latency_model().check_space(cfg.search_space())
        points = latency_points([parse_time(v, "--latency") for v in args.latency])
    else:
        macs = [parse_quantity(v, "--budget") for v in args.budget or []]
        points = budget_points(cfg, macs, params)
    sweep = None
    if args.sweep is not None:
        lo, hi = (parse_quantity(v, "--sweep") for v in args.sweep)
        # The sweep's params axis follows the config's ratio (per-point --params do not span a range).
        sweep = Sweep(lo, hi, None if params == "off" else scaled_params(cfg, hi))
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    out = check_output(args.out if args.out else pareto_run_dir(cfg), "--out")

    columns = (TextColumn("[bold]{task.description:>8}"), BarColumn(), TaskProgressColumn(),
               TextColumn("best {task.fields[best]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {}

        def callback(event):
            kind, label = event["event"], event.get("label")
            if kind == "start":
                for name in event["labels"]:
                    tasks[name] = progress.add_task(name, total=1.0, best="-", start=False)
            elif kind == "progress":
                progress.start_task(tasks[label])
                best = event.get("best_objective")
                progress.update(tasks[label], completed=event["fraction"], best="-" if best is None else f"{best:.2f}")
            elif kind == "done":
                progress.start_task(tasks[label])
                record = event["record"]
                best = f"{max(p['objective'] for p in record['front']):.2f}" if label == SWEEP_LABEL and record["front"] \
                    else f"{record.get('objective', float('nan')):.2f}"
                progress.update(tasks[label], completed=1.0, best=best + (" (reused)" if event["reused"] else ""))
                progress.stop_task(tasks[label])

        result = run_pareto(cfg, points, out=out, jobs=args.jobs, sweep=sweep, callback=callback)
    _show(console, result, out)
    return 0


def _show(console, run: dict, out: Path) -> None:
    from rich.table import Table

    sweep = run["sweep"]
    compare = {c["label"]: c for c in sweep["comparison"]} if sweep else {}
    table = Table(title=f"{escape(run['config']['name'])}: one design per budget ({run['convention']} convention)",
                  title_justify="left", header_style="bold")
    lat = any("latency" in r for r in run["points"])
    for col in ("budget", "params budget", "objective", "MACs", "params", "ρ", "L", *(["latency"] if lat else []),
                "from", "search s"):
        table.add_column(col, justify="left" if col in ("budget", "from") else "right")
    if sweep:
        table.add_column("front best", justify="right")
    for r in run["points"]:
        cells = [r["label"], si_compact(r["budget"]["params"]), f"{r['objective']:.2f}", si_compact(r["macs"]),
                 si_compact(r["params"]),
                 f"{r['rho']:.3f}", str(r["layers"]), *([format_time(r.get("latency"))] if lat else []),
                 ("own search" if r["source"] == r["label"] else f"[yellow]{r['source']} search[/]")
                 + (" (reused)" if r["reused"] else ""), f"{r['seconds']:.1f}"]
        if sweep:
            c = compare[r["label"]]
            cells.append("-" if c["front_best"] is None else
                         f"{c['front_best']:.2f}" if c["margin"] >= 0 else f"[red]{c['front_best']:.2f}[/]")
        table.add_row(*cells)
    for ref in run["references"]:
        table.add_row(f"[red]{escape(ref['name'])}[/]", "", f"{ref['objective']:.2f}", si_compact(ref["macs"]), si_compact(ref["params"]),
                      f"{ref['rho']:.3f}", str(ref["layers"]), *([format_time(ref.get("latency"))] if lat else []),
                      "published", "", *([""] if sweep else []))
    if run["points"] or run["references"]:
        console.print(table)
    hv = run["hypervolume"]
    over = " over predicted latency" if run.get("axis") == "latency" else ""
    parts = [f"hypervolume {hv['points']:.6g} (per-budget designs{over})"] if run["points"] else []
    if sweep:
        parts.append(f"NSGA-II front over {si_compact(sweep['macs_min'])}–{si_compact(sweep['macs_max'])}: {len(sweep['front'])} "
                     f"points, hypervolume {hv['front']:.6g} ({sweep['evaluations']:,} evaluations, "
                     f"{sweep['seconds']:.1f} s)")
        behind = [c["label"] for c in sweep["comparison"] if c["margin"] is not None and c["margin"] < 0]
        if behind:
            parts.append(f"[red]the front beats the per-budget search at {', '.join(behind)}[/]")
    console.print("; ".join(parts))
    if run["carried"]:
        console.print(f"[yellow]{run['carried']} budget(s) took a smaller budget's design: its search scored lower[/]")
    if run["references_skipped"]:
        # One line: the reasons (blocks, strides, head, image size) are in pareto.json.
        names = ", ".join(s["name"] for s in run["references_skipped"])
        console.print(f"[dim]published networks not comparable with this template (see pareto.json): {names}[/]")
    files = ["pareto.json", "pareto.png"] + (["genotype-<budget>.json"] if run["points"] else [])
    console.print(f"wrote {', '.join(files)} to {escape(str(out))} in {run['wall_seconds']:.1f} s")
