"""`profile`: time the ops a preset's search space needs on this machine and write a latency table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import load_config, preset_names


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="measure this machine's op latencies for a preset's search space into a table "
                                       "(then: search --latency 5ms --latency-table TABLE)",
                       description="Time, on this machine, every operator a preset's search space can produce and write "
                       "a latency table; search, pareto and inspect then predict a network's latency from it "
                       "(--latency-table) and can budget it (--latency).")
    p.add_argument("--config", nargs="+", default=None, metavar="PRESET",
                   help="presets (or TOML paths) whose spaces to cover, or 'all'; default mb-29m")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time (default cpu)")
    p.add_argument("--batch", type=int, default=1, help="batch size the latency is for (default 1)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="weights and inputs dtype")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads torch may use (default 1: stable, and timed by thread CPU time)")
    p.add_argument("--channels-last", action="store_true", help="run in channels_last memory format")
    p.add_argument("--out", default=None,
                   help="table file (default latency-<device>-b<batch>-<precision>-t<threads>.json); re-running resumes")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per op (median of them; default 5)")
    p.add_argument("--networks", type=int, default=10,
                   help="random networks per preset timed whole, to fit the per-network overhead (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random networks and the timing order")
    p.add_argument("--force", action="store_true",
                   help="start afresh over a table measured elsewhere or with other settings")


def default_table(settings) -> Path:
    return Path(f"latency-{settings.device}-b{settings.batch}-{settings.precision}-t{settings.threads}"
                f"{'-cl' if settings.channels_last else ''}.json")


def run(args: argparse.Namespace, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..latency.model import LatencyModel
    from ..latency.profile import Timing, profile
    from ..latency.table import Settings

    names = args.config or ["mb-29m"]
    if names == ["all"]:
        names = preset_names()
    configs = [load_config(n) for n in names]
    if args.networks < 0 or args.networks > 1000:
        raise ValueError(f"--networks: expected an integer in [0, 1000], got {args.networks}")
    settings = Settings(args.device, args.batch, args.precision, args.threads, args.channels_last)
    timing = Timing(rounds=args.rounds)
    out = Path(args.out) if args.out else default_table(settings)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("load {task.fields[load]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"profile {settings.describe()}", total=None, load="-")

        def callback(info):
            if info.get("skipped"):
                progress.console.print(f"[dim]{out}: {info['skipped']} ops already timed, resuming[/]")
            progress.update(task, total=info["total"], completed=info["done"], load=f"{info['load']:.1f}",
                            description=f"{info['phase']} ({settings.describe()})")

        table = profile(configs, settings, out, timing=timing, networks=args.networks, seed=args.seed,
                        force=args.force, callback=callback)
    model = LatencyModel(table)
    load = os.getloadavg()
    console.print(f"{len(table.ops)} ops and {len(table.networks)} networks timed on {table.device['name']} "
                  f"({settings.describe()}) in {table.profile_seconds:.0f} s; median noise "
                  f"{100 * table.noise:.1f} %, load {load[0]:.1f} (1 min) {load[1]:.1f} (5 min)")
    if model.selection:
        forms = "  ".join(f"{f} {100 * e:.1f} %" for f, e in model.selection.items())
        console.print(f"overhead model by leave-one-out error over the timed networks: {forms} → [bold]{model.form}[/] "
                      f"(a {model.coef[0]:.3g}, b {1e3 * model.coef[1]:.3g} ms/unit, c {1e3 * model.coef[2]:.3g} ms)")
    console.print(f"wrote [bold]{out}[/]; use it with: run.py --latency 5ms --latency-table {out}")
    return 0
