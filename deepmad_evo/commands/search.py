"""`search` (the default command): design the best network for a budget and write it to a run directory."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from rich.markup import escape

from .. import __version__
from ..genotype import save_genotype
from ..io import atomic_write_text, clean_stale_temps, dumps_json, nan_to_none, read_json
from ..latency.loop import MAX_ROUNDS, MAX_SLACK
from ..limits import check_output
from ..render import print_cross_check, print_latency, print_report
from ..report import genotype_report
from .common import (add_search_options, add_train_options, params_scaled, resolve_config, resolve_train_config,
                     run_identity, search_run_dir)
from .progress import cross_check_with_progress, print_verified, search_with_progress, train_genotype


def add_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="search the best network for a budget (default command)",
        description="Design the network with the highest DeepMAD objective under MAC/params budgets and ρ ≤ ρ0 "
        "and write genotype.json and run.json into a run directory. Budgets are MACs (multiply-accumulates, the "
        "paper's 'FLOPs'), counted in the preset's cost convention (see `presets` and docs/costs.md). Running the "
        "same command again shows the stored result instantly.")
    add_search_options(p, config_help="preset name (r18, r34, r50, mb-29m, mb-50m, mb-89m, b0, mbv2, tiny; list: "
                                      "`presets`) or a TOML file; default mb-29m")
    p.add_argument("--out", default=None, help="run directory (default runs/<label>-<budget>-s<seed>-<hash of every "
                                               "option that changes the result>)")
    p.add_argument("--force", action="store_true", help="search again even if the run directory holds this result, "
                                                        "or replace a different search stored there")
    p.add_argument("--build-check", action="store_true",
                   help="also build the winner with torch on CPU and check its live params/MACs against the closed "
                        "form (a few seconds to a minute)")
    p.add_argument("--no-build", action="store_true",
                   help="under a --latency budget, do not time the winner on this device: the budget then holds for "
                        "the predicted latency only (otherwise the winner is timed and, while it measures over the "
                        f"budget beyond its own noise (at most {100 * MAX_SLACK:.0f} %%), searched again under a predicted "
                        f"budget tightened by budget/measured, up to {MAX_ROUNDS} searches: docs/latency.md). Ignored "
                        "without --latency")
    p.add_argument("--train", action="store_true", help="then train the winner into OUT/train (flags as for `train`)")
    add_train_options(p, config_flag="--train-config")
    p.add_argument("--cross-check", action="store_true",
                   help="cross-check the GA against the continuous relaxation (SLSQP); keep the better genotype "
                        "(a separate run: part of the run's identity)")


def versions() -> dict:
    import numpy
    import pymoo

    return {"deepmad_evo": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pymoo": pymoo.__version__}


def design_of(cfg) -> dict:
    """What is stored with the genotype so that ``inspect`` checks it the way the search did."""
    b, o = cfg.budget, cfg.objective
    return {"preset": cfg.name, "convention": o.convention, "macs": b.macs, "params": b.params, "rho": b.rho,
            "alpha": None if o.alpha is None else list(o.alpha), "beta": o.beta, "seed": cfg.search.seed}


def run(args: argparse.Namespace, console) -> int:
    from ..config import load_config

    cfg = resolve_config(args)
    scaled = params_scaled(args, load_config(args.config))
    if args.cross_check and cfg.budget.latency is not None:
        raise ValueError("--cross-check: the continuous relaxation does not model latency; "
                         "expected no --cross-check with a --latency budget")
    if args.train:
        resolve_train_config(args)  # bad training flags fail now, not after the search
    out = check_output(args.out if args.out else search_run_dir(cfg, args.cross_check), "--out")
    run_file = out / "run.json"
    wanted = run_identity(cfg, args.cross_check)
    if run_file.is_file() and not args.force:
        previous = _load_previous(run_file)
        same = previous is not None and _identity_of(previous) == wanted
        if same and previous.get("latency_table_sha1") == table_digest(cfg):
            from ..genotype import Genotype

            genotype = Genotype.from_dict(previous["genotype"])
            console.print(f"[dim]{escape(str(out))} already holds this search (same options and seed); showing it (--force to redo)[/]")
            problem = _cache_problem(out / "genotype.json", genotype)
            if problem is not None:
                save_genotype(genotype, out / "genotype.json", design=design_of(cfg))
                console.print(f"[yellow]genotype.json {problem}: rebuilt it from run.json[/]")
            _show(console, cfg, genotype, args.build_check, scaled)
            if previous.get("latency"):
                print_latency(console, previous["latency"])
                _print_loop(console, previous["latency"])
            return train_genotype(genotype, args, console, out / "train") if args.train else 0
        # The same search with a re-measured latency table is stale: it is redone in place.
        if previous is not None and previous.get("command") == "search" and not same:
            raise ValueError(f"--out: {out} holds a different search ({_difference(previous, wanted)}); "
                             "use another --out, or --force to replace it")
    clean_stale_temps(out)
    started = time.time()
    result = search_with_progress(cfg, console)
    genotype, objective, cross = result.genotype, result.objective, None
    if args.cross_check:
        cross = cross_check_with_progress(result, cfg, console)
        genotype = cross.best_genotype
        objective = cross.rounded_objective if cross.improved else objective
    latency = None
    if cfg.budget.latency is not None:
        genotype, objective, latency = _honour_latency(cfg, result, console, timed=not args.no_build)
    record = {
        "format": "deepmad-evo/run/1", "command": "search", "config": cfg.to_dict(), "seed": cfg.search.seed,
        "identity": wanted, "versions": versions(), "started": started, "wall_seconds": result.seconds,
        "evaluations": result.n_evals, "feasible": result.feasible, "objective": objective,
        "genotype": genotype.to_dict(), "text": genotype.to_text(), "history": nan_to_none(list(result.history)),
    }
    if cfg.budget.latency_table is not None:
        record["latency_table_sha1"] = table_digest(cfg)
    if latency is not None:
        record["latency"] = latency
    if cross is not None:
        record["cross_check"] = cross.to_dict()
    save_genotype(genotype, out / "genotype.json", design=design_of(cfg))
    atomic_write_text(run_file, dumps_json(record, indent=1) + "\n")
    if cross is not None:
        print_cross_check(console, cross, title=f"{escape(cfg.name)}: GA vs continuous relaxation", returned=True)
    _show(console, cfg, genotype, args.build_check, scaled)
    if latency is not None:
        print_latency(console, latency)
        _print_loop(console, latency)
    console.print(f"searched {result.n_evals:,} genotypes in {result.seconds:.2f} s → [bold]{escape(str(out / 'genotype.json'))}[/]")
    return train_genotype(genotype, args, console, out / "train") if args.train else 0


def _honour_latency(cfg, result, console, timed: bool):
    """Time the winner; while it measures over the budget, search again under a tightened predicted budget.

    Returns (genotype, objective, the latency record of the kept design with the loop's rounds).
    See ``latency.loop``; without timing (``--no-build``, another machine's table) the prediction alone.
    """
    from ..latency.loop import honour_budget
    from ..latency.profile import time_winner
    from ..latency.table import format_time
    from ..search import InfeasibleBudgetError

    budget = cfg.budget
    timings: dict[str, dict] = {}

    def timing(genotype) -> dict:
        key = genotype.to_text()  # a design met again is not re-timed: same measurements, same decisions
        if key not in timings:
            timings[key] = time_winner(genotype, budget, timed=timed)
        return timings[key]

    first = timing(result.genotype)
    if first["measured"] is None:
        return result.genotype, result.objective, first
    model = budget.latency_model()

    def search(target: float):
        console.print(f"[yellow]searching again under a predicted-latency budget of {format_time(target)}[/] "
                      f"(closed loop: the budget {format_time(budget.latency)} holds for the measured latency)")
        try:
            r = search_with_progress(cfg.with_overrides(latency=target), console)
        except InfeasibleBudgetError:
            return None
        return r.genotype, r.objective, model.predict(r.genotype)

    def measure(genotype) -> dict:
        rec = timing(genotype)
        return {"seconds": rec["measured"], "noise": rec["noise"], "load": rec["load"]}

    def on_round(r, nxt):
        if nxt is not None:
            console.print(f"round {len(texts)}: predicted {format_time(r.predicted)}, measured "
                          f"{format_time(r.measured)} ± {100 * r.noise:.0f} % (load {r.load:.1f}) > the budget "
                          f"{format_time(budget.latency)}")

    texts: list[str] = []  # the design of every round, in order

    def measure_round(genotype) -> dict:
        texts.append(genotype.to_text())
        return measure(genotype)

    loop = honour_budget(budget.latency, search, measure_round, (result.genotype, result.objective, first["predicted"]),
                         on_round=on_round)
    rec = dict(timing(loop.genotype))
    rec["loop"] = {**loop.to_dict(), "designs": texts}
    return loop.genotype, loop.objective, rec


def _print_loop(console, rec: dict) -> None:
    loop = rec.get("loop")
    if not loop or len(loop["rounds"]) < 2 and loop["honoured"]:
        return
    from ..latency.table import format_time

    n = len(loop["rounds"])
    if loop["honoured"]:
        console.print(f"[green]closed loop:[/] search {loop['chosen'] + 1} of {n} measures within the budget "
                      f"{format_time(loop['budget'])} (predicted budget tightened to "
                      f"{format_time(loop['rounds'][loop['chosen']]['target'])}); run.json records every round")
    else:
        console.print(f"[red]latency budget not honoured[/]: none of {n} searches measured within "
                      f"{format_time(loop['budget'])}; kept the fastest measured design (run.json records every "
                      "round); a noisy machine or an outdated table (re-run `profile`) are the usual causes")


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
    print_report(console, report, title=f"{escape(cfg.name)}: best network")
    b = cfg.budget
    if scaled:
        console.print(f"[dim]params budget {b.params / 1e6:.2f} M: the preset's params budget scaled with --budget "
                      "(same params/MACs ratio; --params sets it)[/]")
    console.print(f"[dim]budgets checked in the {cfg.objective.convention} convention (MACs, the paper's 'FLOPs'); "
                  "`inspect` of this run checks the same budgets[/]")
    if build:
        print_verified(console, genotype)


def table_digest(cfg) -> str | None:
    """SHA-1 of the latency table (bounded read): a resumed or re-measured table invalidates a cached search."""
    if cfg.budget.latency_table is None:
        return None
    from ..latency.table import table_digest as digest

    return digest(cfg.budget.latency_table)


def _load_previous(path: Path) -> dict | None:
    """A previous run record that can be shown again (parseable, bounded, with a valid genotype), else None."""
    from ..genotype import Genotype

    try:
        previous = read_json(path)
        if isinstance(previous, dict):
            Genotype.from_dict(previous.get("genotype"))
            return previous
    except ValueError:
        pass
    return None


def _cache_problem(path: Path, genotype) -> str | None:
    """Why the cached ``genotype.json`` cannot stand for ``genotype`` (run.json's), or None when it is sound."""
    from ..genotype import Genotype

    if not path.exists():
        return "was missing"
    try:
        stored = Genotype.from_dict(read_json(path))
    except (OSError, ValueError):
        return "was unreadable or corrupt"
    return None if stored == genotype else "held a different network than run.json"
