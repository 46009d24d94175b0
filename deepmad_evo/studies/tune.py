"""ρ0 (and α) tuning as in the paper: design one network per setting, train each on a short proxy schedule,
keep the best; trials that are clearly losing are stopped early.

Early stopping is successive halving on epochs (rungs at ``grace·eta^k`` epochs; at each rung only the
best ``1/eta`` of the trials go on). Locally the rungs run in turn (stopped trials keep their checkpoints);
on Ray the same rule is Ray Tune's asynchronous ``ASHAScheduler``, with Ray Tune's resume. Designs are
cached in ``OUT/designs/``, trainings in ``OUT/trials/<setting>/``, so a rerun continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..genotype import save_genotype
from ..io import atomic_write_text
from .executors import _one_line, ray_init, ray_module, trial_resources
from .trial import history, recipe_dict, run_trial

TUNE_FORMAT = "deepmad-evo/tune/1"
COLUMNS = ("name", "rho0", "alpha", "objective", "rho", "macs", "params", "top1", "epochs", "status", "error",
           "genotype")


@dataclass(frozen=True)
class Setting:
    """One point of the tuning grid."""

    rho0: float
    alpha: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        text = f"rho{self.rho0:g}"
        return text if self.alpha is None else text + "-a" + "_".join(f"{a:g}" for a in self.alpha)


def grid(rho0s: Sequence[float], alphas: Sequence[Sequence[float]] | None = None) -> list[Setting]:
    """Every (ρ0, α) combination; ``alphas`` None keeps the config's α."""
    for r in rho0s:
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise ValueError(f"--rho0: expected positive numbers, got {r!r}")
    if len(set(rho0s)) != len(rho0s):
        raise ValueError(f"--rho0: expected distinct values, got {list(rho0s)}")
    return [Setting(float(r), None if a is None else tuple(float(x) for x in a))
            for r in rho0s for a in (alphas or [None])]


def design(config, settings: Sequence[Setting], out_dir: str | Path, *, search_overrides: dict | None = None,
           on_design: Callable[[Setting, dict, bool], None] | None = None) -> list[dict]:
    """Search one network per setting (cached in OUT/designs/<name>.json for the same config).

    Args:
        config: the search Config (budgets, template, objective); each setting replaces ρ0 and α.
        settings: the grid.
        out_dir: the tuning folder.
        search_overrides: SearchSettings fields to replace (e.g. jobs).
        on_design: called with (setting, design, cached) after each.

    Returns:
        One design record per setting: name, rho0, alpha, text, objective, rho, entropy, macs, params.
    """
    from ..search import run_search

    designs = []
    for s in settings:
        cfg = config.with_overrides(rho=s.rho0, alpha=s.alpha)
        path = Path(out_dir) / "designs" / f"{s.name}.json"
        key = cfg.to_dict()
        cached = _read_json(path)
        if isinstance(cached, dict) and cached.get("config") == key and isinstance(cached.get("design"), dict):
            record, was_cached = cached["design"], True
        else:
            result = run_search(cfg.search_space(), cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                                convention=cfg.objective.convention, settings=cfg.search_settings(**(search_overrides or {})),
                                seed=cfg.search.seed)
            ev = result.evaluation
            record = {"name": s.name, "rho0": s.rho0, "alpha": list(ev.alpha), "text": result.genotype.to_text(),
                      "objective": result.objective, "rho": ev.rho, "entropy": ev.entropy, "macs": float(ev.macs),
                      "params": float(ev.params), "search_seconds": result.seconds}
            save_genotype(result.genotype, path.with_suffix(".genotype.json"))
            atomic_write_text(path, json.dumps({"config": key, "design": record}, indent=1) + "\n")
            was_cached = False
        designs.append(record)
        if on_design:
            on_design(s, record, was_cached)
    return designs


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class TuneResult:
    """Every trial's row and the winning setting (None when no trial finished)."""

    rows: tuple[dict, ...]
    winner: dict | None
    out_dir: Path
    rungs: tuple[int, ...]


def rungs_of(epochs: int, grace: int, eta: int) -> tuple[int, ...]:
    """Epochs at which trials are compared: grace, grace·eta, … below the full schedule."""
    if grace < 1 or eta < 2:
        raise ValueError(f"--grace/--eta: expected grace >= 1 and eta >= 2, got {grace} and {eta}")
    out, r = [], grace
    while r < epochs:
        out.append(r)
        r *= eta
    return tuple(out)


def trial_specs(designs: Sequence[dict], out_dir: str | Path, recipe, threads: int | None = 1) -> list[dict]:
    flat = recipe_dict(recipe)
    trials = Path(out_dir).resolve() / "trials"
    return [{"name": d["name"], "genotype": d["text"], "recipe": flat, "out": str(trials / d["name"]),
             "threads": threads} for d in designs]


def tune_local(designs: Sequence[dict], out_dir: str | Path, recipe, *, grace: int = 1, eta: int = 2,
               threads: int | None = 1, retries: int = 1, callback_for: Callable[[dict], Callable] | None = None,
               on_trial: Callable[[str, dict], None] | None = None) -> TuneResult:
    """Train every design with successive halving in this process; returns the table and the winner.

    Args:
        designs: from ``design``.
        out_dir: the tuning folder (trials/<name>/ per setting, tune.csv, tune.json, tune.png).
        recipe: the proxy training recipe (a TrainConfig, image size resolved), the same for all.
        grace, eta: first rung (epochs) and the halving factor.
        threads: torch threads per trial.
        retries: further attempts of a failing trial before it is reported failed.
        callback_for: spec -> TrainEvent callback (progress).
        on_trial: called with (name, event) where event["kind"] is "rung", "stopped", "done" or "failed".
    """
    out_dir = Path(out_dir)
    specs = trial_specs(designs, out_dir, recipe, threads)
    epochs = recipe.epochs
    rungs = rungs_of(epochs, grace, eta)
    notify = on_trial or (lambda name, event: None)
    state = {s["name"]: {"status": "pending", "error": None, "stopped_at": None} for s in specs}

    def attempt(spec, stop_after):
        for n in range(retries + 1):
            try:
                return run_trial(spec, callback_for(spec) if callback_for else None, stop_after)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded as a failed trial
                error = _one_line(exc)
        state[spec["name"]].update(status="failed", error=error)
        notify(spec["name"], {"kind": "failed", "error": error})
        return None

    alive = list(specs)
    for rung in rungs:
        scores = []
        for spec in alive:
            record = attempt(spec, rung)
            if record is not None:
                top1 = _top1_at(spec, rung)
                scores.append((top1, spec))
                notify(spec["name"], {"kind": "rung", "epoch": rung, "top1": top1})
        keep = max(1, math.ceil(len(scores) / eta))
        ranked = sorted(scores, key=lambda t: -t[0] if t[0] is not None else math.inf)  # stable: grid order on ties
        for top1, spec in ranked[keep:]:
            state[spec["name"]].update(status="stopped", stopped_at=rung)
            notify(spec["name"], {"kind": "stopped", "epoch": rung, "top1": top1})
        alive = [spec for _, spec in ranked[:keep]]
        result_table(specs, designs, state, out_dir, rungs)
    for spec in alive:
        record = attempt(spec, None)
        if record is not None:
            state[spec["name"]]["status"] = "done"
            notify(spec["name"], {"kind": "done", "top1": record["top1"]})
        result_table(specs, designs, state, out_dir, rungs)
    return result_table(specs, designs, state, out_dir, rungs, figure=True)


def _top1_at(spec: dict, epoch: int) -> float | None:
    rows = history(spec)
    return rows[epoch - 1].get("val_top1") if len(rows) >= epoch else None


def result_table(specs, designs, state, out_dir: Path, rungs, figure: bool = False) -> TuneResult:
    """Build the rows from each trial's metrics, pick the winner, write tune.csv/json/png atomically."""
    by_name = {d["name"]: d for d in designs}
    rows = []
    for spec in specs:
        d, st = by_name[spec["name"]], state[spec["name"]]
        curve = [r.get("val_top1") for r in history(spec)]
        rows.append({"name": spec["name"], "rho0": d["rho0"], "alpha": " ".join(f"{a:g}" for a in d["alpha"]),
                     "objective": d["objective"], "rho": d["rho"], "macs": d["macs"], "params": d["params"],
                     "top1": curve[-1] if curve else None, "epochs": len(curve), "status": st["status"],
                     "error": st["error"], "genotype": d["text"], "history": curve})
    done = [r for r in rows if r["status"] == "done" and r["top1"] is not None]
    winner = max(done, key=lambda r: r["top1"]) if done else None  # max keeps the first of equals: grid order
    result = TuneResult(tuple(rows), winner, out_dir, tuple(rungs))
    write_tune(result, figure)
    return result


def write_tune(result: TuneResult, figure: bool = True) -> None:
    """tune.csv, tune.json and (with ``figure``) tune.png, each atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    atomic_write_text(result.out_dir / "tune.csv", buffer.getvalue())
    atomic_write_text(result.out_dir / "tune.json", json.dumps(
        {"format": TUNE_FORMAT, "rungs": list(result.rungs), "winner": None if result.winner is None else result.winner["name"],
         "rows": list(result.rows)}, indent=1, allow_nan=False) + "\n")
    if figure and any(r["history"] for r in result.rows):
        from .plots import plot_tune

        plot_tune(result.rows, result.out_dir / "tune.png", title="ρ0 tuning: validation top-1 per epoch")


# ------------------------------------------------------------------------------------------------ Ray
def _ray_trainable(config: dict) -> None:
    """A Ray Tune function trainable: resume or start the trial, report val top-1 after every epoch."""
    from ray import tune

    spec = config["spec"]
    for row in history(spec):  # epochs trained in an earlier attempt: the scheduler sees them again
        tune.report({"epoch": row["epoch"], "top1": row["val_top1"]})
    reported = len(history(spec))

    def on_event(event):
        nonlocal reported
        if event.kind == "epoch" and event.epoch > reported:
            reported = event.epoch
            tune.report({"epoch": event.epoch, "top1": event.metrics["val_top1"]})

    run_trial(spec, on_event)


def tune_ray(designs: Sequence[dict], out_dir: str | Path, recipe, *, grace: int = 1, eta: int = 2,
             retries: int = 1, address: str | None = None, cpus_per_trial: int = 1,
             num_cpus: int | None = None) -> TuneResult:
    """The same tuning on Ray Tune: one trial per GPU (or per ``cpus_per_trial`` CPUs), ASHA early
    stopping, failed trials retried ``retries`` times (FailureConfig) and reported; a rerun restores
    the unfinished experiment (Tuner.restore) and every trial resumes from its own checkpoint."""
    ray_module()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    out_dir = Path(out_dir).resolve()
    specs = trial_specs(designs, out_dir, recipe, threads=cpus_per_trial)
    rungs = rungs_of(recipe.epochs, grace, eta)
    key = hashlib.sha1(json.dumps([specs, grace, eta], sort_keys=True).encode()).hexdigest()[:8]
    name, storage = f"tune-{key}", out_dir / "ray"
    started = ray_init(address, num_cpus)
    try:
        resources = trial_resources(cpus_per_trial)
        trainable = tune.with_resources(_ray_trainable, {"cpu": resources["num_cpus"], "gpu": resources["num_gpus"]})
        if tune.Tuner.can_restore(str(storage / name)):
            tuner = tune.Tuner.restore(str(storage / name), trainable, resume_errored=True)
        else:
            scheduler = ASHAScheduler(time_attr="epoch", max_t=recipe.epochs, grace_period=grace, reduction_factor=eta)
            tuner = tune.Tuner(
                trainable, param_space={"spec": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(metric="top1", mode="max", scheduler=scheduler),
                run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=retries)))
        grid_result = tuner.fit()
    finally:
        if started:
            ray_module().shutdown()
    state = {s["name"]: {"status": "pending", "error": None, "stopped_at": None} for s in specs}
    for r in grid_result:
        trial = r.config["spec"]["name"]
        epochs_done = len(history(r.config["spec"]))
        if r.error is not None:
            state[trial].update(status="failed", error=_one_line(r.error))
        elif epochs_done >= recipe.epochs:
            state[trial]["status"] = "done"
        else:
            state[trial].update(status="stopped", stopped_at=epochs_done)
    return result_table(specs, designs, state, out_dir, rungs, figure=True)

