"""Worker tasks of a Pareto run: one per budget (and the sweep) on ``deepmad_evo.parallel``'s pool."""

from __future__ import annotations

from typing import Callable

from ..parallel import run_tasks as run_parallel
from .budgets import solve_budget
from .sweep import SWEEP_LABEL, solve_sweep

Callback = Callable[[dict], None]


def _run_task(kind, cfg, what, seed, path, emit) -> dict:
    solve = solve_budget if kind == "budget" else solve_sweep
    return solve(cfg, what, seed, path, emit)


def run_tasks(tasks: list[tuple], jobs: int, report: Callback) -> dict:
    """Run (kind, cfg, point, seed, path) tasks; returns {label: record}. Sweep first (the longest).

    Each task writes its record the moment it finishes, so an interrupted run keeps them; an
    interruption stops every worker at once.
    """
    results = {}

    def done(index, record):
        task = tasks[index]
        label = SWEEP_LABEL if task[0] == "sweep" else task[2].label
        results[label] = record
        report({"event": "done", "label": label, "record": record, "reused": False})

    run_parallel(_run_task, tasks, jobs=jobs, emit=report, on_done=done, preload=["deepmad_evo.pareto"])
    return results
