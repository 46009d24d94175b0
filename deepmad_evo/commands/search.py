"""`search` (the default command): design the best network for a budget and write it to a run directory."""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

from .. import __version__
from ..genotype import save_genotype
from ..io import atomic_write_text
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
    out = Path(args.out) if args.out else search_run_dir(cfg)
    run_file = out / "run.json"
    if run_file.is_file() and not args.force:
        previous = _load_previous(run_file)
        if (previous is not None and previous.get("config") == cfg.to_dict()
                and previous.get("latency_table_sha1") == table_digest(cfg)
                and (not args.cross_check or "cross_check" in previous)):
            from ..genotype import Genotype

            genotype = Genotype.from_dict(previous["genotype"])
            console.print(f"[dim]{out} already holds this search (same config and seed); showing it (--force to redo)[/]")
            _show(console, cfg, genotype, not args.no_build)
            if previous.get("latency"):
                print_latency(console, previous["latency"])
            return train_genotype(genotype, args, console, out / "train") if args.train else 0
    started = time.time()
    result = search_with_progress(cfg, console)
    genotype, objective, cross = result.genotype, result.objective, None
    if args.cross_check:
        cross = cross_check_with_progress(result, cfg, console)
        genotype = cross.best_genotype
        objective = cross.rounded_objective if cross.improved else objective
    record = {
        "format": "deepmad-evo/run/1", "command": "search", "config": cfg.to_dict(), "seed": cfg.search.seed,
        "versions": versions(), "started": started, "wall_seconds": result.seconds, "evaluations": result.n_evals,
        "feasible": result.feasible, "objective": objective, "genotype": genotype.to_dict(),
        "text": genotype.to_text(), "history": list(result.history),
    }
    if cfg.budget.latency_table is not None:
        record["latency_table_sha1"] = table_digest(cfg)
    if cross is not None:
        record["cross_check"] = cross.to_dict()
    save_genotype(genotype, out / "genotype.json")
    atomic_write_text(run_file, json.dumps(record, indent=1) + "\n")
    if cross is not None:
        print_cross_check(console, cross, title=f"{cfg.name}: GA vs continuous relaxation", returned=True)
    _show(console, cfg, genotype, not args.no_build)
    if cfg.budget.latency is not None:
        from ..latency.profile import time_winner

        record["latency"] = time_winner(genotype, cfg.budget, timed=not args.no_build)
        atomic_write_text(run_file, json.dumps(record, indent=1) + "\n")
        print_latency(console, record["latency"])
    console.print(f"searched {result.n_evals:,} genotypes in {result.seconds:.2f} s → [bold]{out / 'genotype.json'}[/]")
    return train_genotype(genotype, args, console, out / "train") if args.train else 0


def _show(console, cfg, genotype, build: bool = True) -> None:
    report = genotype_report(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention, cfg.budget)
    print_report(console, report, title=f"{cfg.name}: best network")
    if build:
        print_verified(console, genotype)


def table_digest(cfg) -> str | None:
    """SHA-1 of the latency table's bytes: a resumed or re-measured table invalidates a cached search."""
    if cfg.budget.latency_table is None:
        return None
    return hashlib.sha1(Path(cfg.budget.latency_table).read_bytes()).hexdigest()


def _load_previous(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
