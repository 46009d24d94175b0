"""`search` (the default command): design the best network for a budget and write it to a run directory."""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

from .. import __version__
from ..config import load_config, parse_quantity
from ..costs import CONVENTIONS
from ..genotype import BLOCKS, atomic_write_text, save_genotype
from ..render import print_report
from ..report import genotype_report
from ..search import SearchSettings, run_search
from .train import add_train_options, resolve_train_config, train_genotype


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search the best network for a budget (default command)")
    p.add_argument("--budget", default=None, help="MAC budget, e.g. 4.5G (K/M/G/T suffixes or a plain number)")
    p.add_argument("--params", default=None, help="parameter budget, e.g. 29M")
    p.add_argument("--rho", type=float, default=None, help="effectiveness bound rho0 (default from the config)")
    p.add_argument("--config", default=None, help="preset name (r18, r50, mb-29m, …) or TOML path; default mb-29m")
    p.add_argument("--block", choices=BLOCKS, default=None, help="use this block family in every stage")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--convention", choices=CONVENTIONS, default=None, help="cost convention (default from the config)")
    p.add_argument("--out", default=None, help="run directory (default runs/<config>-<budget>-s<seed>-<hash>)")
    p.add_argument("--force", action="store_true", help="search again even if the run directory holds this result")
    p.add_argument("--no-build", action="store_true", help="do not build the winner on CPU to verify its params/MACs")
    p.add_argument("--train", action="store_true", help="then train the winner into OUT/train (flags as for `train`)")
    add_train_options(p, config_flag="--train-config")
    p.add_argument("--cross-check", action="store_true",
                   help="cross-check the GA against the continuous relaxation (SLSQP); keep the better genotype")


def resolve_config(args: argparse.Namespace):
    cfg = load_config(args.config)
    return cfg.with_overrides(
        macs=None if args.budget is None else parse_quantity(args.budget, "--budget"),
        params=None if args.params is None else parse_quantity(args.params, "--params"),
        rho=args.rho, block=args.block, image_size=args.image_size, seed=args.seed, convention=args.convention,
    )


def settings_of(cfg) -> SearchSettings:
    return cfg.search_settings()


def default_out(cfg) -> Path:
    digest = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    macs = "nomacs" if cfg.budget.macs is None else f"{cfg.budget.macs / 1e9:g}G"
    return Path("runs") / f"{cfg.name}-{macs}-s{cfg.search.seed}-{digest}"


def versions() -> dict:
    import numpy
    import pymoo

    return {"deepmad_evo": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pymoo": pymoo.__version__}


def search_with_progress(cfg, console):
    """Run the configured search with a rich progress bar; returns the SearchResult."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = settings_of(cfg)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("best {task.fields[best]}"), TextColumn("feasible {task.fields[feas]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        n = settings.chains
        ga = progress.add_task(f"GA ×{n} chains", total=n * settings.restarts * settings.generations, best="-", feas="-")
        polish = progress.add_task("polish", total=(n * settings.perturbations + settings.finish)
                                   if settings.local_search else 0,
                                   best="-", feas="-", visible=settings.local_search)
        best = {}

        def callback(info):
            # Chains report interleaved from several processes: advance by one step per event.
            best[info["phase"]] = max(best.get(info["phase"], float("-inf")), info["best_objective"])
            progress.update(ga if info["phase"] == "ga" else polish, advance=1,
                            best=f"{best[info['phase']]:.2f}", feas=f"{100 * info['feasible_fraction']:.0f}%")

        result = run_search(cfg.search_space(), cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                            convention=cfg.objective.convention, settings=settings, seed=cfg.search.seed,
                            callback=callback)
    return result


def run(args: argparse.Namespace, console) -> int:
    cfg = resolve_config(args)
    if args.train:
        resolve_train_config(args)  # bad training flags fail now, not after the search
    out = Path(args.out) if args.out else default_out(cfg)
    run_file = out / "run.json"
    if run_file.is_file() and not args.force:
        previous = _load_previous(run_file)
        if (previous is not None and previous.get("config") == cfg.to_dict()
                and (not args.cross_check or "cross_check" in previous)):
            from ..genotype import Genotype

            genotype = Genotype.from_dict(previous["genotype"])
            console.print(f"[dim]{out} already holds this search (same config and seed); showing it (--force to redo)[/]")
            _show(console, cfg, genotype, not args.no_build)
            return train_genotype(genotype, args, console, out / "train") if args.train else 0
    started = time.time()
    result = search_with_progress(cfg, console)
    genotype, objective, cross = result.genotype, result.objective, None
    if args.cross_check:
        from .crosscheck import cross_check_with_progress

        cross = cross_check_with_progress(result, cfg, console)
        genotype = cross.best_genotype
        objective = cross.rounded_objective if cross.improved else objective
    record = {
        "format": "deepmad-evo/run/1", "command": "search", "config": cfg.to_dict(), "seed": cfg.search.seed,
        "versions": versions(), "started": started, "wall_seconds": result.seconds, "evaluations": result.n_evals,
        "feasible": result.feasible, "objective": objective, "genotype": genotype.to_dict(),
        "text": genotype.to_text(), "history": list(result.history),
    }
    if cross is not None:
        record["cross_check"] = cross.to_dict()
    save_genotype(genotype, out / "genotype.json")
    atomic_write_text(run_file, json.dumps(record, indent=1) + "\n")
    if cross is not None:
        from .crosscheck import print_cross_check

        print_cross_check(console, cross, title=f"{cfg.name}: GA vs continuous relaxation", returned=True)
    _show(console, cfg, genotype, not args.no_build)
    console.print(f"searched {result.n_evals:,} genotypes in {result.seconds:.2f} s → [bold]{out / 'genotype.json'}[/]")
    return train_genotype(genotype, args, console, out / "train") if args.train else 0


def _show(console, cfg, genotype, build: bool = True) -> None:
    report = genotype_report(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention, cfg.budget)
    print_report(console, report, title=f"{cfg.name}: best network")
    if build:
        from .build import print_verified

        print_verified(console, genotype)


def _load_previous(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
