"""The Fig. 2 experiment: train every sampled network with one recipe and seed, tabulate accuracy against ρ and entropy.

``run_study`` reads a sample directory (``sample_networks`` + ``write_samples``), trains each network —
and the DeepMAD design at ρ0 stored with the samples — through an executor, and writes after every
finished trial (atomically) ``study.csv`` / ``study.json`` (ρ, entropy, objective, MACs, params, top-1,
…) and ``fig2.png``. Each trial lives in ``OUT/models/<name>/``; a finished one is never retrained and an
interrupted one resumes from its last epoch, so the whole study can be stopped and rerun at any time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..io import atomic_write_text
from .executors import LocalExecutor, Outcome
from .sampling import load_samples
from .trial import finished, recipe_dict, run_trial

STUDY_FORMAT = "deepmad-evo/study/1"
COLUMNS = ("name", "kind", "rho", "entropy", "objective", "macs", "params", "top1", "top5", "val_loss", "epochs",
           "train_seconds", "status", "error", "genotype")
REFERENCE = "deepmad"


@dataclass(frozen=True)
class StudyResult:
    """The table (one row per network, samples by ρ then the DeepMAD design) and where it was written."""

    rows: tuple[dict, ...]
    out_dir: Path
    rho0: float | None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]

    def correlations(self) -> dict:
        """Spearman rank correlation of top-1 with entropy and with ρ, over all sampled networks and over
        those with ρ ≤ ρ0 (the paper's "effective" range); NaN where fewer than 3 networks."""
        from scipy.stats import spearmanr

        out = {}
        samples = [r for r in self.rows if r["kind"] == "sample" and r["top1"] is not None]
        for scope, rows in (("all", samples), ("rho<=rho0", [r for r in samples if self.rho0 and r["rho"] <= self.rho0])):
            for key in ("entropy", "rho"):
                ok = len(rows) >= 3 and len({r[key] for r in rows}) > 1 and len({r["top1"] for r in rows}) > 1
                out[f"{key} ({scope}, n={len(rows)})"] = float(spearmanr([r[key] for r in rows],
                                                                         [r["top1"] for r in rows])[0]) if ok else math.nan
        return out


def study_specs(samples_dir: str | Path, out_dir: str | Path, recipe, threads: int | None = 1,
                include_reference: bool = True) -> tuple[list[dict], dict]:
    """Trial specs of every network in a sample directory (and its DeepMAD design), plus the index."""
    index = load_samples(samples_dir)
    models = Path(out_dir).resolve() / "models"
    flat = recipe_dict(recipe)
    entries = list(index["samples"])
    if include_reference and isinstance(index.get("reference"), dict):
        entries.append({**index["reference"], "name": REFERENCE})
    specs = [{"name": e["name"], "genotype": e["text"], "recipe": flat, "out": str(models / e["name"]),
              "threads": threads} for e in entries]
    return specs, index


def run_study(samples_dir: str | Path, out_dir: str | Path, recipe, *, executor=None, threads: int | None = 1,
              callback_for: Callable[[dict], Callable] | None = None,
              on_outcome: Callable[[Outcome], None] | None = None, include_reference: bool = True) -> StudyResult:
    """Train every sampled network (and the DeepMAD design) with ``recipe``; write the table and figure.

    Args:
        samples_dir: a directory written by ``write_samples``.
        out_dir: the study folder (models/<name>/ per network, study.csv, study.json, fig2.png).
        recipe: a TrainConfig with image_size resolved; the same for every network (seed included).
        executor: LocalExecutor (default) or RayExecutor.
        threads: torch threads per trial (1 suits many small trials on a shared CPU).
        callback_for: spec -> TrainEvent callback, for progress of the local executor.
        on_outcome: called after each trial (finished or failed).
        include_reference: also train the DeepMAD design stored with the samples.

    Returns:
        The ``StudyResult``; failed trials are rows with status "failed" and their error.
    """
    out_dir = Path(out_dir)
    specs, index = study_specs(samples_dir, out_dir, recipe, threads, include_reference)
    by_name = {s["name"]: s for s in index["samples"]}
    if isinstance(index.get("reference"), dict):
        by_name[REFERENCE] = index["reference"]
    rho0 = index.get("reference", {}).get("rho0") if isinstance(index.get("reference"), dict) else None
    outcomes: dict[str, Outcome] = {}
    for spec in specs:  # finished trials are read back, not rerun (nor even sent to the executor)
        done = finished(spec)
        if done is not None:
            outcomes[spec["name"]] = Outcome(spec["name"], "done", done, None, 0)

    def table(figure: bool = False) -> StudyResult:
        rows = [_row(by_name[s["name"]], s, outcomes.get(s["name"])) for s in specs]
        result = StudyResult(tuple(rows), out_dir, rho0)
        write_study(result, index, figure)
        return result

    def record(outcome: Outcome) -> None:
        outcomes[outcome.name] = outcome
        table()  # the table after every network (cheap); the figure once at the end, even on Ctrl-C
        if on_outcome:
            on_outcome(outcome)

    todo = [s for s in specs if s["name"] not in outcomes]
    table()
    try:
        (executor or LocalExecutor()).run(run_trial, todo, record, callback_for)
    finally:
        result = table(figure=True)
    return result


def _row(entry: dict, spec: dict, outcome: Outcome | None) -> dict:
    row = {"name": spec["name"], "kind": "deepmad" if spec["name"] == REFERENCE else "sample",
           "genotype": spec["genotype"], **{k: entry.get(k) for k in ("rho", "entropy", "objective", "macs", "params")}}
    result = (outcome.result if outcome else None) or {}
    row.update({k: result.get(k) for k in ("top1", "top5", "val_loss", "epochs", "train_seconds")})
    row["status"] = "pending" if outcome is None else outcome.status
    row["error"] = None if outcome is None else outcome.error
    return row


def write_study(result: StudyResult, index: dict, figure: bool = True) -> None:
    """study.csv, study.json and (with ``figure``) fig2.png in the study folder, each atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    atomic_write_text(result.out_dir / "study.csv", buffer.getvalue())
    record = {"format": STUDY_FORMAT, "rho0": result.rho0, "budget": index.get("budget"),
              "tolerance": index.get("tolerance"), "rows": list(result.rows)}
    atomic_write_text(result.out_dir / "study.json", json.dumps(record, indent=1, allow_nan=False) + "\n")
    if figure and any(r["top1"] is not None for r in result.rows):
        from .plots import plot_study

        plot_study(result.rows, result.rho0, result.out_dir / "fig2.png",
                   title=_title(index))


def _title(index: dict) -> str:
    b = index.get("budget") or {}
    macs, params = b.get("macs"), b.get("params")
    if macs is None or params is None:
        return "random networks"
    return (f"{index.get('n', '?')} random networks at {macs / 1e6:.3g} MMACs / {params / 1e6:.3g} M params "
            f"(within {100 * index.get('tolerance', 0):g} %)")
