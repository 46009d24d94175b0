"""The whole Pareto run: resume records in a run directory, the tasks, and ``pareto.json`` assembled from them."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

from ..config import Config
from ..genotype import Genotype, save_genotype
from ..io import atomic_write_text, clean_stale_temps, dumps_json, jsonable, read_json
from ..parallel import default_jobs
from .budgets import RECORD_FORMAT, BudgetPoint, Sweep, check_budget, monotone_points, quantity_label, record_point
from .plot import plot_pareto
from .references import PUBLISHED_DIR, reference_points
from .sweep import SWEEP_FORMAT, SWEEP_LABEL, front_best, hypervolume
from .workers import run_tasks

Callback = Callable[[dict], None]

RUN_FORMAT = "deepmad-evo/pareto/1"


def _load_record(path: Path, expect: dict, what: str, out: Path, cfg: Config) -> dict | None:
    """A matching finished record, ``None`` when absent; a mismatch is a one-line error naming the first
    differing key of ``expect`` (ordered most telling first: format, seed, budget, config); a damaged
    record of this run is a one-line error too."""
    if not path.is_file():
        return None
    hint = f"use a new --out (or delete {path})"
    try:
        record = read_json(path)
    except ValueError:
        raise ValueError(f"--out: {path} is not a readable pareto record; {hint}") from None
    if not isinstance(record, dict):
        raise ValueError(f"--out: {path} is not a pareto record; {hint}")
    for key, value in expect.items():
        if record.get(key) != value:
            raise ValueError(f"--out: {out} holds {what} of a different run ({key} differs); {hint}")
    problem = _record_problem(record, cfg)
    if problem:
        raise ValueError(f"--out: {path} is damaged ({problem}); delete it to search this budget again")
    return record


def _record_problem(record: dict, cfg: Config) -> str | None:
    """What is wrong with a finished record of the right run (``None``: usable as is)."""
    def number(key, kind=(int, float)):
        v = record.get(key)
        return None if isinstance(v, kind) and not isinstance(v, bool) else f"{key} is missing or not a number"

    for key, kind in (("search_seed", int), ("evaluations", int), ("seconds", (int, float))):
        if (p := number(key, kind)):
            return p
    if record["format"] == SWEEP_FORMAT:
        for key in ("pop_size", "generations"):
            if (p := number(key, int)):
                return p
        front = record.get("front")
        if not isinstance(front, list):
            return "front is missing"
        for i, row in enumerate(front):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not all(
                    isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                    for k in ("objective", "macs", "params", "rho", "layers")):
                return f"front[{i}] is not a point"
        return None
    try:
        genotype = Genotype.from_dict(record.get("genotype"))
    except ValueError as exc:
        return f"genotype: {str(exc)[:120]}"
    # The cached numbers must be those of the cached genotype.
    for key, value in record_point(genotype, cfg).items():
        if record.get(key) != value:
            return f"{key} does not match its genotype"
    if not isinstance(record.get("feasible"), bool):
        return "feasible is missing"
    return None



def run_pareto(cfg: Config, points: Sequence[BudgetPoint], *, out: str | os.PathLike, jobs: int | None = None,
               sweep: Sweep | None = None, callback: Callback | None = None,
               published: str | os.PathLike | None = PUBLISHED_DIR) -> dict:
    """Search every budget point (and the sweep), assemble the family, write the run directory.

    Args:
        cfg: the run configuration (template, space, ρ0, objective, search effort, seed).
        points: budget points (``budget_points``).
        out: the run directory; finished budgets found there are reused.
        jobs: worker processes (default: the usable cores); 1 runs in-process. Workers start by
            forkserver/spawn when the caller runs threads (``deepmad_evo.parallel``), so a script
            calling this with jobs > 1 needs the usual ``if __name__ == "__main__":`` guard.
        sweep: optional NSGA-II sweep.
        callback: progress events — ``{"event": "start", "labels", "reused"}``, ``{"event":
            "progress", "label", "fraction", "best_objective"}``, ``{"event": "done", "label",
            "record", "reused"}``.
        published: folder of published structures to compare with (skipped when absent).

    Returns:
        The content of ``pareto.json``.

    Raises:
        ValueError: for infeasible budgets or a run directory holding another run.
    """
    t0 = time.perf_counter()
    report = callback or (lambda event: None)
    out = Path(out)
    points = tuple(points)
    if not points and sweep is None:
        raise ValueError("--budget: expected at least one MAC budget (e.g. --budget 0.4G 4.5G) or --sweep MIN MAX")
    latency_run = any(p.latency is not None for p in points)
    if latency_run and (sweep is not None or any(p.latency is None for p in points)):
        raise ValueError("--latency: a latency run has latency budgets only; expected no --budget or --sweep with it")
    if jobs is None:
        jobs = default_jobs()
    if jobs < 1:
        raise ValueError(f"--jobs: expected an integer >= 1, got {jobs}")
    space = cfg.search_space()
    for p in points:
        check_budget(cfg, space, p.macs, p.params, "--budget", p.latency)
    if sweep is not None:
        if not 0 < sweep.macs_min < sweep.macs_max:
            raise ValueError(f"--sweep: expected 0 < MIN < MAX, got {quantity_label(sweep.macs_min)} "
                             f"{quantity_label(sweep.macs_max)}")
        check_budget(cfg, space, sweep.macs_max, sweep.params_max, "--sweep MAX")

    seed = cfg.search.seed
    config = jsonable(cfg.to_dict())
    records, tasks, reused = {}, [], []
    if sweep is not None:
        path = out / "sweep.json"
        expect = {"format": SWEEP_FORMAT, "seed": seed,
                  "sweep": jsonable({"macs_min": sweep.macs_min, "macs_max": sweep.macs_max,
                                      "params_max": sweep.params_max}), "config": config}
        record = _load_record(path, expect, "a sweep", out, cfg)
        if record is None:
            tasks.append(("sweep", cfg, sweep, seed, path))
        else:
            records[SWEEP_LABEL] = record
            reused.append(SWEEP_LABEL)
    for p in points:
        path = out / f"budget-{p.label}.json"
        expect = {"format": RECORD_FORMAT, "seed": seed,
                  "budget": jsonable(p.record(cfg)),
                  "config": config}
        record = _load_record(path, expect, f"budget {p.label}", out, cfg)
        if record is None:
            tasks.append(("budget", cfg, p, seed, path))
        else:
            records[p.label] = record
            reused.append(p.label)

    labels = ([SWEEP_LABEL] if sweep is not None else []) + [p.label for p in points]
    report({"event": "start", "labels": labels, "reused": reused})
    for label in reused:
        report({"event": "done", "label": label, "record": records[label], "reused": True})
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    records.update(run_tasks(tasks, jobs, report))
    return assemble(cfg, points, records, out=out, sweep=sweep, reused=reused, published=published,
                    seconds=time.perf_counter() - t0)


def assemble(cfg: Config, points: Sequence[BudgetPoint], records: dict, *, out: Path, sweep: Sweep | None,
             reused: Sequence[str] = (), published=PUBLISHED_DIR, seconds: float | None = None) -> dict:
    """Build ``pareto.json`` from the records, write it, the per-budget genotypes and the picture."""
    chosen = monotone_points(points, [records[p.label] for p in points])
    rows = []
    for p, (rec, source) in zip(points, chosen):
        own = records[p.label]
        budget = {k: v for k, v in p.record(cfg).items() if k != "label"}
        row = {"label": p.label, "budget": budget,
               **{k: rec[k] for k in ("genotype", "text", "objective", "macs", "params", "rho", "layers", "feasible",
                                      "latency") if k in rec},
               "source": source, "search_objective": own["objective"], "search_seed": own["search_seed"],
               "evaluations": own["evaluations"], "seconds": own["seconds"], "cpu_seconds": own.get("cpu_seconds"),
               "reused": p.label in reused}
        rows.append(row)
        save_genotype(Genotype.from_dict(rec["genotype"]), out / f"genotype-{p.label}.json")

    # The x-axis: MACs, or the predicted latency in a latency run (then hypervolume is over latency).
    axis = "latency" if any(p.latency is not None for p in points) else "macs"
    params_on = any(p.params is not None for p in points) or (sweep is not None and sweep.params_max is not None)
    macs_ref = max([p.x for p in points] + ([sweep.macs_max] if sweep else []))
    params_ref = None
    if params_on:
        params_ref = max([p.params for p in points if p.params is not None]
                         + ([sweep.params_max] if sweep and sweep.params_max is not None else []))

    def hv(items):
        return hypervolume([r["objective"] for r in items], [r[axis] for r in items],
                           [r["params"] for r in items] if params_on else None, macs_ref=macs_ref, params_ref=params_ref)

    hyper = {"points": hv([r for r in rows if r["feasible"]]), "reference": {"objective": 0.0, axis: macs_ref, "params": params_ref},
             "objectives": ["-objective", f"{axis}/reference.{axis}"] + (["params/reference.params"] if params_on else [])}
    sweep_out = None
    if sweep is not None:
        srec = records[SWEEP_LABEL]
        front = srec["front"]
        hyper["front"] = hv(front)
        comparison = []
        for p, row in zip(points, rows):
            best = front_best(front, p.macs, p.params)
            comparison.append({"label": p.label, "objective": row["objective"],
                               "front_best": None if best is None else best["objective"],
                               "margin": None if best is None else row["objective"] - best["objective"]})
        sweep_out = {"macs_min": sweep.macs_min, "macs_max": sweep.macs_max, "params_max": sweep.params_max,
                     "front": front, "comparison": comparison, "search_seed": srec["search_seed"],
                     "pop_size": srec["pop_size"], "generations": srec["generations"],
                     "evaluations": srec["evaluations"], "seconds": srec["seconds"],
                     "cpu_seconds": srec.get("cpu_seconds"), "reused": SWEEP_LABEL in reused}
    refs, skipped = reference_points(cfg, published)
    if axis == "latency":
        refs, skipped = _with_latency(cfg, refs, skipped)
    run = {"format": RUN_FORMAT, "config": cfg.to_dict(), "seed": cfg.search.seed,
           "convention": cfg.objective.convention, **({"axis": axis} if axis == "latency" else {}),
           "points": rows, "sweep": sweep_out, "hypervolume": hyper,
           "references": refs, "references_skipped": skipped,
           "carried": sum(r["source"] != r["label"] for r in rows), "wall_seconds": seconds}
    atomic_write_text(out / "pareto.json", dumps_json(run, indent=1) + "\n")
    plot_pareto(run, out / "pareto.png")
    return run


def _with_latency(cfg: Config, refs: list, skipped: list) -> tuple[list, list]:
    """Published points that have a predicted latency; the others move to ``skipped``."""
    kept = [r for r in refs if "latency" in r]
    skipped = skipped + [{"name": r["name"], "reason": "the latency table cannot predict it"} for r in refs
                         if "latency" not in r]
    return kept, skipped
