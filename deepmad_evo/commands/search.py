"""`search` (the default command): design the best network for a budget and write it to a run directory."""

from __future__ import annotations

import argparse
import hashlib
import platform
import time
from pathlib import Path

from rich.markup import escape

from .. import __version__
from ..genotype import save_genotype
from ..io import atomic_write_text, clean_stale_temps, dumps_json, nan_to_none, read_json
from ..limits import check_output
from ..render import print_cross_check, print_latency, print_report
from ..report import genotype_report
from .common import add_search_options, add_train_options, resolve_config, resolve_train_config, search_run_dir
from .progress import cross_check_with_progress, print_verified, search_with_progress, train_genotype


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search the best network for a budget (default command)")
    add_search_options(p)
    p.add_argument("--out", default=None, help="run directory (default runs/<config>-<budget>-s<seed>-<hash>)")
    p.add_argument("--force", action="store_true", help="search again even if the run directory holds this result")
    p.add_argument("--no-build", action="store_true",
                   help="do not build the winner to verify its params/MACs (nor time it under a latency budget)")
    p.add_argument("--train", action="store_true", help="then train the winner into OUT/train (flags as for `train`)")
    add_train_options(p, config_flag="--train-config")
    p.add_argument("--cross-check", action="store_true",
                   help="cross-check the GA against the continuous relaxation (SLSQP); keep the better genotype")


def versions() -> dict:
    import numpy
    import pymoo

    return {"deepmad_evo": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pymoo": pymoo.__version__}


def run(args: argparse.Namespace, console) -> int:
    cfg = resolve_config(args)
    if args.cross_check and cfg.budget.latency is not None:
        raise ValueError("--cross-check: the continuous relaxation does not model latency; "
                         "expected no --cross-check with a --latency budget")
    if args.train:
        resolve_train_config(args)  # bad training flags fail now, not after the search
    out = check_output(args.out if args.out else search_run_dir(cfg), "--out")
    run_file = out / "run.json"
    if not args.force:
        previous = cached_result(out, cfg, args.cross_check, console)
        if previous is not None:
            genotype = previous["genotype"]
            console.print(f"[dim]{escape(str(out))} already holds this search (same config and seed); showing it (--force to redo)[/]")
            _show(console, cfg, genotype, not args.no_build)
            if previous.get("latency"):
                print_latency(console, previous["latency"])
            return train_genotype(genotype, args, console, out / "train") if args.train else 0
    clean_stale_temps(out)
    started = time.time()
    result = search_with_progress(cfg, console)
    genotype, objective, cross = result.genotype, result.objective, None
    if args.cross_check:
        cross = cross_check_with_progress(result, cfg, console)
        genotype = cross.best_genotype
        objective = cross.rounded_objective if cross.improved else objective
    record = {
        "format": RUN_FORMAT, "command": "search", "config": cfg.to_dict(), "seed": cfg.search.seed,
        "versions": versions(), "started": started, "wall_seconds": result.seconds, "evaluations": result.n_evals,
        "feasible": result.feasible, "objective": objective, "genotype": genotype.to_dict(),
        "text": genotype.to_text(), "history": nan_to_none(list(result.history)),
    }
    if cfg.budget.latency_table is not None:
        record["latency_table_sha1"] = table_digest(cfg)
    if cross is not None:
        record["cross_check"] = cross.to_dict()
    save_genotype(genotype, out / "genotype.json")
    atomic_write_text(run_file, dumps_json(record, indent=1) + "\n")
    if cross is not None:
        print_cross_check(console, cross, title=f"{escape(cfg.name)}: GA vs continuous relaxation", returned=True)
    _show(console, cfg, genotype, not args.no_build)
    if cfg.budget.latency is not None:
        from ..latency.profile import time_winner

        record["latency"] = time_winner(genotype, cfg.budget, timed=not args.no_build)
        atomic_write_text(run_file, dumps_json(record, indent=1) + "\n")
        print_latency(console, record["latency"])
    console.print(f"searched {result.n_evals:,} genotypes in {result.seconds:.2f} s → [bold]{escape(str(out / 'genotype.json'))}[/]")
    return train_genotype(genotype, args, console, out / "train") if args.train else 0


def _show(console, cfg, genotype, build: bool = True) -> None:
    report = genotype_report(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention, cfg.budget)
    print_report(console, report, title=f"{escape(cfg.name)}: best network")
    if build:
        print_verified(console, genotype)


def table_digest(cfg) -> str | None:
    """SHA-1 of the latency table's bytes: a resumed or re-measured table invalidates a cached search."""
    if cfg.budget.latency_table is None:
        return None
    return hashlib.sha1(Path(cfg.budget.latency_table).read_bytes()).hexdigest()


RUN_FORMAT = "deepmad-evo/run/1"


def cached_result(out: Path, cfg, cross_check: bool, console) -> dict | None:
    """The record of a finished search of this config in ``out``, verified (its ``genotype`` a
    ``Genotype``); ``None`` to search (again).

    run.json is the completion record (written last). A damaged one means the search runs again
    (said in one line); a missing, damaged or different genotype.json beside a good run.json is
    rewritten from run.json.
    """
    from ..genotype import Genotype, load_genotype

    run_file = out / "run.json"
    if not run_file.exists():
        return None

    def again(why):
        console.print(f"[yellow]run.json: {escape(why)}; searching again[/]")

    try:
        previous = read_json(run_file)
    except ValueError as exc:
        again(str(exc).split(": ", 1)[-1])
        return None
    if not isinstance(previous, dict) or previous.get("format") != RUN_FORMAT:
        again(f"not a {RUN_FORMAT} record")
        return None
    if (previous.get("config") != cfg.to_dict() or previous.get("latency_table_sha1") != table_digest(cfg)
            or (cross_check and "cross_check" not in previous)):
        return None
    try:
        genotype = Genotype.from_dict(previous.get("genotype"))
    except ValueError as exc:
        again(f"damaged ({str(exc)[:100]})")
        return None
    path = out / "genotype.json"
    try:
        same = load_genotype(path) == genotype
    except ValueError:
        same = False
    if not same:
        save_genotype(genotype, path)
        console.print("[yellow]genotype.json was missing, damaged or not the one in run.json: rewritten from run.json[/]")
    return {**previous, "genotype": genotype}
