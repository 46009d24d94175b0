"""`tune --rho0 …`: design one network per rho0 (and alpha), train each on a short proxy schedule, report the best."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config, parse_quantity
from .common import add_trial_options, check_trial_options, trial_recipe
from .progress import TrialsView


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune rho0 (and alpha): one design per setting, proxy training, early stopping",
                       description="The paper's rho0 tuning: search one network per --rho0 (x --alpha) setting at the "
                                   "config's budgets, train each with the same proxy recipe, stop the clearly worse "
                                   "ones early (successive halving; ASHA on Ray) and report the winner. Writes "
                                   "OUT/tune.csv, OUT/tune.json and OUT/tune.png; rerun the same command to resume.")
    p.add_argument("--config", default=None, help="search preset (digits, r18, mb-29m, …) or TOML path; default mb-29m")
    p.add_argument("--budget", default=None, help="MAC budget (default from the config)")
    p.add_argument("--params", default=None, help="parameter budget (default from the config)")
    p.add_argument("--rho0", nargs="+", type=float, required=True, metavar="RHO", help="rho0 values, e.g. 0.1 0.3 0.5 0.7")
    p.add_argument("--alpha", nargs="+", default=None, metavar="A,B,…",
                   help="alpha vectors to cross with --rho0, each comma-separated (e.g. 1,1,8 1,1,4); default the config's")
    p.add_argument("--image-size", dest="search_image_size", type=int, default=None, help="image side of the designs")
    p.add_argument("--grace", type=int, default=1, help="epochs before the first comparison (default 1)")
    p.add_argument("--eta", type=int, default=2, help="keep the best 1/eta of the trials at each rung (default 2)")
    p.add_argument("--out", default=None, help="tuning folder (default runs/tune-<config>-<dataset>)")
    add_trial_options(p)


def _alphas(values):
    if values is None:
        return None
    out = []
    for text in values:
        try:
            out.append(tuple(float(x) for x in text.split(",")))
        except ValueError:
            raise ValueError(f"--alpha: expected comma-separated numbers such as 1,1,8, got {text!r}") from None
    return out


def run(args: argparse.Namespace, console) -> int:
    from rich.markup import escape

    from rich.table import Table

    from ..studies.tune import design, grid, tune_local, tune_ray

    check_trial_options(args)
    cfg = load_config(args.config).with_overrides(
        macs=None if args.budget is None else parse_quantity(args.budget, "--budget"),
        params=None if args.params is None else parse_quantity(args.params, "--params"),
        image_size=args.search_image_size)
    settings = grid(args.rho0, _alphas(args.alpha))
    recipe = trial_recipe(args, cfg.template.image_size)
    out = Path(args.out) if args.out else Path("runs") / f"tune-{cfg.name}-{recipe.dataset}"
    console.print(f"[bold]tune[/] {len(settings)} settings of {cfg.name} on {recipe.dataset}, {recipe.epochs} epochs "
                  f"each (rungs every x{args.eta} from epoch {args.grace}), executor {args.executor} → {out}")

    def on_design(setting, record, cached):
        console.print(f"{setting.name}: objective {record['objective']:.1f}, rho {record['rho']:.3f}, "
                      f"{record['params']:,.0f} params{' (cached)' if cached else ''}  {record['text']}")

    designs = design(cfg, settings, out, on_design=on_design)
    if args.executor == "ray":
        console.print("trials run on Ray Tune (ASHA); progress is in the table at the end")
        result = tune_ray(designs, out, recipe, grace=args.grace, eta=args.eta, retries=args.retries,
                          address=args.ray_address, cpus_per_trial=args.cpus_per_trial)
    else:
        with TrialsView(console, len(designs), "finished or stopped") as view:
            def on_trial(name, event):
                if event["kind"] == "rung":
                    view.progress.console.print(f"{name}: top-1 {event['top1']:.2f}% at epoch {event['epoch']}")
                elif event["kind"] == "stopped":
                    view.advance(f"[yellow]{name}: stopped at epoch {event['epoch']} (not in the best 1/{args.eta})[/]")
                elif event["kind"] == "done":
                    view.advance(f"{name}: finished, top-1 {event['top1']:.2f}%")
                else:
                    view.advance(f"[red]{name}: failed: {event['error']}[/]")

            result = tune_local(designs, out, recipe, grace=args.grace, eta=args.eta, threads=args.threads,
                                retries=args.retries, callback_for=view.callback_for, on_trial=on_trial)
    table = Table(title="rho0 tuning", title_justify="left", header_style="bold")
    for column in ("setting", "rho0", "alpha", "objective", "rho", "params", "epochs", "top-1", "status"):
        table.add_column(column, justify="right")
    for r in result.rows:
        mark = " ★" if result.winner is not None and r["name"] == result.winner["name"] else ""
        table.add_row(r["name"] + mark, f"{r['rho0']:g}", r["alpha"], f"{r['objective']:.1f}", f"{r['rho']:.3f}",
                      f"{r['params']:,.0f}", str(r["epochs"]), "-" if r["top1"] is None else f"{r['top1']:.2f}%",
                      r["status"] + (f" ({r['error']})" if r["error"] else ""))
    console.print(table)
    if result.winner is None:
        console.print("[red]no trial finished; see the errors above[/]")
        return 1
    console.print(f"winner: [bold]{result.winner['name']}[/] (rho0 {result.winner['rho0']:g}, top-1 "
                  f"{result.winner['top1']:.2f}%); tune.csv, tune.json and tune.png in [bold]{escape(str(out))}[/]")
    return 1 if any(r["status"] == "failed" for r in result.rows) else 0
