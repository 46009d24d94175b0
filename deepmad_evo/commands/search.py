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
    p = sub.add_parser(
        "search", help="search the best network for a budget (default command)",
        description="Design the network with the highest DeepMAD objective under MAC/params budgets and ρ ≤ ρ0 "
        "and write genotype.json and run.json into a run directory. Budgets are MACs (multiply-accumulates, the "
        "paper's 'FLOPs'), counted in the preset's cost convention (see `presets` and docs/costs.md). Running the "
        "same command again shows the stored result instantly.")
    p.add_argument("--budget", default=None,
                   help="MAC budget, e.g. 4.5G (K/M/G/T suffixes or a plain number); without --params the preset's "
                        "params budget scales with it by the preset's params/MACs ratio")
    p.add_argument("--params", default=None, help="parameter budget, e.g. 29M, or 'off' for none (default: the "
                                                  "preset's, scaled with --budget)")
    p.add_argument("--rho", type=float, default=None, help="effectiveness bound ρ0 (default from the preset)")
    p.add_argument("--config", default=None,
                   help="preset name (r18, r34, r50, mb-29m, mb-50m, mb-89m, b0, mbv2, tiny; list: `presets`) or a "
                        "TOML file; default mb-29m")
    p.add_argument("--block", choices=BLOCKS, default=None,
                   help="use this block family in every stage (switching ResNet <-> MobileNet families also switches "
                        "kernels, expansion range and ρ0 to that family's defaults; the run is labelled PRESET+BLOCK)")
    p.add_argument("--image-size", type=int, default=None, help="input image side (default from the preset)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default from the preset; same seed, same result)")
    p.add_argument("--convention", choices=CONVENTIONS, default=None,
                   help="cost convention of the budgets: torch (what the nn.Module has) or tinynas (the paper's); "
                        "default from the preset")
    p.add_argument("--out", default=None, help="run directory (default runs/<label>-<budget>-s<seed>-<hash of every "
                                               "option that changes the result>)")
    p.add_argument("--force", action="store_true", help="search again even if the run directory holds this result, "
                                                        "or replace a different search stored there")
    p.add_argument("--build-check", action="store_true",
                   help="also build the winner with torch on CPU and check its live params/MACs against the closed "
                        "form (a few seconds to a minute)")
    p.add_argument("--no-build", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    p.add_argument("--train", action="store_true", help="then train the winner into OUT/train (flags as for `train`)")
    add_train_options(p, config_flag="--train-config")
    p.add_argument("--cross-check", action="store_true",
                   help="cross-check the GA against the continuous relaxation (SLSQP); keep the better genotype "
                        "(a separate run: part of the run's identity)")


def resolve_config(args: argparse.Namespace):
    """The preset with the command-line overrides; ``--budget`` alone scales the params budget with it."""
    from dataclasses import replace

    cfg = load_config(args.config)
    macs = None if args.budget is None else parse_quantity(args.budget, "--budget")
    params, scaled = None, False
    if args.params is not None:
        params = None if str(args.params).lower() == "off" else parse_quantity(args.params, "--params")
    elif macs is not None and cfg.budget.params is not None and cfg.budget.macs is not None:
        # One rule for search and pareto: the params budget keeps the preset's params/MACs ratio.
        params, scaled = cfg.budget.params * macs / cfg.budget.macs, True
    out = cfg.with_overrides(macs=macs, params=params, rho=args.rho, block=args.block, image_size=args.image_size,
                             seed=args.seed, convention=args.convention)
    if args.params is not None and params is None:
        out = replace(out, budget=replace(out.budget, params=None))
    if args.block is not None and set(cfg.template.blocks) != {args.block}:
        out = replace(out, name=f"{cfg.name}+{args.block}")
    return out, scaled


def settings_of(cfg) -> SearchSettings:
    return cfg.search_settings()


def identity(cfg, cross_check: bool) -> dict:
    """Everything that changes a search's result: the resolved config (budgets, ρ0, template, space,
    objective, convention, seed, effort) and the stages run after the GA."""
    return {"config": cfg.to_dict(), "cross_check": bool(cross_check)}


def default_out(cfg, cross_check: bool = False) -> Path:
    digest = hashlib.sha1(json.dumps(identity(cfg, cross_check), sort_keys=True).encode()).hexdigest()[:8]
    macs = "nomacs" if cfg.budget.macs is None else f"{cfg.budget.macs / 1e9:g}G"
    return Path("runs") / f"{cfg.name}-{macs}-s{cfg.search.seed}{'-xc' if cross_check else ''}-{digest}"


def design_of(cfg) -> dict:
    """What is stored with the genotype so that ``inspect`` checks it the way the search did."""
    b, o = cfg.budget, cfg.objective
    return {"preset": cfg.name, "convention": o.convention, "macs": b.macs, "params": b.params, "rho": b.rho,
            "alpha": None if o.alpha is None else list(o.alpha), "beta": o.beta, "seed": cfg.search.seed}


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
    cfg, scaled = resolve_config(args)
    if args.train:
        resolve_train_config(args)  # bad training flags fail now, not after the search
    out = Path(args.out) if args.out else default_out(cfg, args.cross_check)
    run_file = out / "run.json"
    wanted = identity(cfg, args.cross_check)
    if run_file.is_file() and not args.force:
        previous = _load_previous(run_file)
        if previous is not None and _identity_of(previous) == wanted:
            from ..genotype import Genotype

            genotype = Genotype.from_dict(previous["genotype"])
            console.print(f"[dim]{out} already holds this search (same options and seed); showing it (--force to redo)[/]")
            _show(console, cfg, genotype, args.build_check, scaled)
            return train_genotype(genotype, args, console, out / "train") if args.train else 0
        if previous is not None and previous.get("command") == "search":
            raise ValueError(f"--out: {out} holds a different search ({_difference(previous, wanted)}); "
                             "use another --out, or --force to replace it")
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
        "identity": wanted, "versions": versions(), "started": started, "wall_seconds": result.seconds,
        "evaluations": result.n_evals, "feasible": result.feasible, "objective": objective,
        "genotype": genotype.to_dict(), "text": genotype.to_text(), "history": list(result.history),
    }
    if cross is not None:
        record["cross_check"] = cross.to_dict()
    save_genotype(genotype, out / "genotype.json", design=design_of(cfg))
    atomic_write_text(run_file, json.dumps(record, indent=1) + "\n")
    if cross is not None:
        from .crosscheck import print_cross_check

        print_cross_check(console, cross, title=f"{cfg.name}: GA vs continuous relaxation", returned=True)
    _show(console, cfg, genotype, args.build_check, scaled)
    console.print(f"searched {result.n_evals:,} genotypes in {result.seconds:.2f} s → [bold]{out / 'genotype.json'}[/]")
    return train_genotype(genotype, args, console, out / "train") if args.train else 0


def _identity_of(record: dict) -> dict:
    # Runs written before the identity was recorded: a plain search unless it holds a cross-check.
    return record.get("identity") or {"config": record.get("config"), "cross_check": "cross_check" in record}


def _difference(previous: dict, wanted: dict) -> str:
    old = _identity_of(previous)
    if old.get("cross_check") != wanted["cross_check"]:
        return "with --cross-check" if old.get("cross_check") else "without --cross-check"
    a, b = old.get("config") or {}, wanted["config"]
    keys = [f"{k}.{kk}" for k in b if isinstance(b[k], dict) and isinstance(a.get(k), dict)
            for kk in b[k] if a[k].get(kk) != b[k][kk]] + [k for k in b if not isinstance(b[k], dict) and a.get(k) != b[k]]
    return "differs in " + ", ".join(keys[:4]) if keys else "other options"


def _show(console, cfg, genotype, build: bool = False, scaled: bool = False) -> None:
    report = genotype_report(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention, cfg.budget)
    print_report(console, report, title=f"{cfg.name}: best network")
    b = cfg.budget
    if scaled:
        console.print(f"[dim]params budget {b.params / 1e6:.2f} M: the preset's params budget scaled with --budget "
                      "(same params/MACs ratio; --params sets it)[/]")
    console.print(f"[dim]budgets checked in the {cfg.objective.convention} convention (MACs, the paper's 'FLOPs'); "
                  "`inspect` of this run checks the same budgets[/]")
    if build:
        from .build import print_verified

        print_verified(console, genotype)


def _load_previous(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
