"""`study DIR`: train every network of a sample (and its DeepMAD design) with one recipe; the Fig. 2 table and picture."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import add_trial_options, check_trial_options, trial_recipe
from .progress import TrialsView


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="train every sampled network, tabulate top-1 vs rho and entropy (Fig. 2)",
                       description="Train every network in a `sample` directory, plus its DeepMAD design at rho0, with "
                                   "the same recipe and seed; write OUT/study.csv, OUT/study.json and OUT/fig2.png "
                                   "after each network. Rerun the same command to resume: finished networks are "
                                   "never retrained, an interrupted one continues from its last epoch.")
    p.add_argument("samples", metavar="DIR", help="a directory written by `run.py sample`")
    p.add_argument("--out", default=None, help="study folder (default DIR/study-<dataset>)")
    p.add_argument("--no-reference", action="store_true", help="do not train the DeepMAD design at rho0")
    add_trial_options(p)


def run(args: argparse.Namespace, console) -> int:
    from rich.markup import escape

    from rich.table import Table

    from ..genotype import Genotype
    from ..studies.executors import make_executor
    from ..studies.sampling import load_samples
    from ..studies.study import run_study, study_specs

    check_trial_options(args)
    index = load_samples(args.samples)
    if not index["samples"]:
        raise ValueError(f"DIR: {args.samples!r} holds no networks")
    image_size = Genotype.from_text(index["samples"][0]["text"]).image_size
    recipe = trial_recipe(args, image_size)
    out = Path(args.out) if args.out else Path(args.samples) / f"study-{recipe.dataset}"
    executor = make_executor(args.executor, args.retries, args.ray_address, args.cpus_per_trial)
    specs, _ = study_specs(args.samples, out, recipe, args.threads, not args.no_reference)
    console.print(f"[bold]study[/] {len(specs)} networks from {args.samples} on {recipe.dataset}, "
                  f"{recipe.epochs} epochs each, seed {recipe.seed}, executor {args.executor} → {out}")
    with TrialsView(console, len(specs), "networks") as view:
        def on_outcome(o):
            if o.status == "done":
                view.advance(f"{o.name}: top-1 {o.result['top1']:.2f}%  ({o.result['train_seconds']:.0f} s of training"
                             f"{', already trained' if o.attempts == 0 else ''})")
            else:
                view.advance(f"[red]{o.name}: failed after {o.attempts} attempt(s): {o.error}[/]")

        result = run_study(args.samples, out, recipe, executor=executor, threads=args.threads,
                           callback_for=view.callback_for if args.executor == "local" else None, on_outcome=on_outcome,
                           include_reference=not args.no_reference)
    table = Table(title="top-1 of every network (sorted by rho)", title_justify="left", header_style="bold")
    for column in ("name", "rho", "entropy", "objective", "MACs", "params", "top-1", "status"):
        table.add_column(column, justify="right")
    for r in result.rows:
        table.add_row(r["name"], f"{r['rho']:.3f}", f"{r['entropy']:.1f}", f"{r['objective']:.1f}", f"{r['macs']:,.0f}",
                      f"{r['params']:,.0f}", "-" if r["top1"] is None else f"{r['top1']:.2f}%", r["status"])
    console.print(table)
    for name, value in result.correlations().items():
        console.print(f"Spearman(top-1, {name}) = " + ("n/a" if math.isnan(value) else f"{value:+.2f}"))
    console.print(f"study.csv, study.json and fig2.png in [bold]{escape(str(out))}[/]")
    if result.failed:
        console.print(f"[red]{len(result.failed)} network(s) failed: "
                      f"{', '.join(r['name'] for r in result.failed)}; rerun to retry them[/]")
        return 1
    return 0
