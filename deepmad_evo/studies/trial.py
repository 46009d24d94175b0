"""One trial of a study or a tuning run: train one genotype into its own folder, resumably, exactly once.

A trial is described by a plain, JSON-able ``spec`` so that any executor (this process, a Ray worker on
another machine) can run it::

    {"name": "007", "genotype": "<text form>", "recipe": {<every TrainConfig field>}, "out": "<folder>",
     "threads": 1}

The folder holds the training run (checkpoint.pt per epoch, metrics, model.pt) and, once the training is
complete, ``result.json``. A trial whose ``result.json`` exists for the same genotype and recipe is
never trained again; an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Callable

from ..io import atomic_write_text

RESULT = "result.json"
RESULT_FORMAT = "deepmad-evo/trial/1"


class StopTrial(Exception):
    """Raised by a trial's epoch callback to stop training after a checkpoint (it can be resumed later)."""


def recipe_dict(config) -> dict:
    """Every field of a TrainConfig as a flat JSON-able dict (tuples become lists)."""
    return {f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v for f in fields(config)}


def finished(spec: dict) -> dict | None:
    """The stored result of a trial finished with this very genotype and recipe, or None."""
    path = Path(spec["out"]) / RESULT
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (not isinstance(record, dict) or record.get("format") != RESULT_FORMAT
            or record.get("genotype") != spec["genotype"] or record.get("recipe") != _experiment(spec["recipe"])):
        return None
    return record


def _experiment(recipe: dict) -> dict:
    # Runtime fields (paths, device, workers, logging) may differ between attempts of the same trial.
    from ..train import TrainConfig

    runtime = {f.name for f in fields(TrainConfig) if f.metadata["runtime"]}
    return {k: v for k, v in recipe.items() if k not in runtime}


def trained_epochs(spec: dict) -> int:
    """Epochs already in the trial's checkpoint (0 when there is none or it is unreadable)."""
    from ..train import CHECKPOINT

    path = Path(spec["out"]) / "metrics.json"
    if not (Path(spec["out"]) / CHECKPOINT).is_file():
        return 0
    try:
        return len(json.loads(path.read_text())["epochs"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return 0


def history(spec: dict) -> list[dict]:
    """The per-epoch metric rows written so far (empty when none)."""
    try:
        rows = json.loads((Path(spec["out"]) / "metrics.json").read_text())["epochs"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return []
    return rows if isinstance(rows, list) else []


def run_trial(spec: dict, callback: Callable | None = None, stop_after: int | None = None) -> dict:
    """Train the spec's genotype with its recipe (resuming its checkpoint), unless already finished.

    Args:
        spec: the trial (see the module docstring).
        callback: receives the trainer's TrainEvents; may raise ``StopTrial`` after an epoch.
        stop_after: stop (resumably) once this many epochs are trained; None trains to the end.

    Returns:
        The result record: name, genotype, recipe, epochs, top1, top5, val_loss, train_seconds, status
        ("done", or "paused" when stopped before the last epoch).
    """
    done = finished(spec)
    if done is not None:
        return done
    import torch

    from ..genotype import Genotype
    from ..train import CHECKPOINT, TrainConfig, build_data, make_model, train

    config = TrainConfig(**spec["recipe"])
    genotype = Genotype.from_text(spec["genotype"])
    out = Path(spec["out"])
    threads = spec.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        data = build_data(config)
        model = make_model(genotype, data.num_classes, config)
        resume = (out / CHECKPOINT).is_file()
        if stop_after is not None and resume and trained_epochs(spec) >= stop_after:
            return _record(spec, history(spec), "paused")
        user = callback or (lambda event: None)

        def on_event(event):
            user(event)
            if stop_after is not None and event.kind == "epoch" and event.epoch >= stop_after and event.epoch < event.epochs:
                raise StopTrial(event.epoch)

        try:
            result = train(model, config, data, out, resume=resume, callback=on_event,
                           extra={"genotype": spec["genotype"], "trial": spec["name"]})
        except StopTrial:
            return _record(spec, history(spec), "paused")
    finally:
        torch.set_num_threads(before)
    record = _record(spec, result.history, "done")
    atomic_write_text(out / RESULT, json.dumps(record, indent=1) + "\n")
    return record


def _record(spec: dict, rows: list[dict], status: str) -> dict:
    last = rows[-1] if rows else {}
    seconds = sum(r.get("epoch_seconds") or 0.0 for r in rows)  # over every attempt, resumed ones too
    return {"format": RESULT_FORMAT, "name": spec["name"], "genotype": spec["genotype"],
            "recipe": _experiment(spec["recipe"]), "status": status, "epochs": len(rows),
            "top1": last.get("val_top1"), "top5": last.get("val_top5"), "val_loss": last.get("val_loss"),
            "train_seconds": seconds, "history": [r.get("val_top1") for r in rows]}
