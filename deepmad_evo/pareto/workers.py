"""Worker processes of a Pareto run: one task per budget (and the sweep), progress through a queue."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from queue import Empty
from typing import Callable

from .budgets import solve_budget
from .sweep import SWEEP_LABEL, solve_sweep

Callback = Callable[[dict], None]

_QUEUE = None


def _watch_parent(parent) -> None:
    # A killed run must not leave workers behind. The parent's sentinel fires when it dies; the
    # parent pid cannot tell (a forkserver worker's parent is the server, which outlives the run).
    parent.join()
    os._exit(1)


def _init_worker(queue) -> None:
    global _QUEUE
    _QUEUE = queue
    queue.cancel_join_thread()  # progress messages are disposable; never block a worker's exit on them
    # Ctrl-C is the parent's to handle: it tears the pool down and finished budgets are on disk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _run_task(task: tuple) -> dict:
    kind, cfg, what, seed, path = task
    solve = solve_budget if kind == "budget" else solve_sweep
    return solve(cfg, what, seed, path, _QUEUE.put)


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Workers fork from a server that has the math core imported already.
        ctx.set_forkserver_preload(["deepmad_evo.pareto"])
        return ctx
    return mp.get_context("spawn")


def run_tasks(tasks: list[tuple], jobs: int, report: Callback) -> dict:
    """Run (kind, cfg, point, seed, path) tasks; returns {label: record}. Sweep first (the longest)."""
    results = {}

    def done(task, record):
        label = SWEEP_LABEL if task[0] == "sweep" else task[2].label
        results[label] = record
        report({"event": "done", "label": label, "record": record, "reused": False})

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            kind, cfg, what, seed, path = task
            done(task, (solve_budget if kind == "budget" else solve_sweep)(cfg, what, seed, path, report))
        return results

    ctx = _context()
    queue = ctx.Queue()
    executor = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(queue,))

    def drain():
        while True:
            try:
                report(queue.get_nowait())
            except Empty:
                return

    try:
        futures = {executor.submit(_run_task, t): i for i, t in enumerate(tasks)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            for f in sorted(finished, key=futures.get):
                done(tasks[futures[f]], f.result())
    except BaseException:
        # Interrupted or failed: stop the other searches now; finished budgets are already on disk.
        for p in list((getattr(executor, "_processes", None) or {}).values()):
            p.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        queue.close()
    return results
