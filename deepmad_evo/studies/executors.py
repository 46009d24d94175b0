"""Where the trials of a study run: this process, one after another (default), or a Ray cluster.

Both executors take the same JSON-able trial specs and the same function, retry a failing trial up
to ``retries`` more times, and return one ``Outcome`` per spec — a trial that still fails is an
outcome with status "failed" and its error, never dropped. Ctrl-C stops at once; whatever trials
finished have written their results, and the rest resume from their checkpoints on the next run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Outcome:
    """What became of one trial."""

    name: str
    status: str  # "done" or "failed"
    result: dict | None
    error: str | None
    attempts: int


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


class LocalExecutor:
    """Run trials in this process, in order (a CPU machine trains one small network per core best
    by itself; a GPU machine one network at a time)."""

    name = "local"

    def __init__(self, retries: int = 1) -> None:
        self.retries = retries

    def run(self, fn: Callable[..., dict], specs: Sequence[dict], on_outcome: Callable[[Outcome], None] | None = None,
            callback_for: Callable[[dict], Callable] | None = None) -> list[Outcome]:
        """Call ``fn(spec, callback)`` for every spec; ``callback_for(spec)`` gives the progress callback."""
        outcomes = []
        for spec in specs:
            error, attempts = None, 0
            result = None
            while attempts <= self.retries:
                attempts += 1
                try:
                    result = fn(spec, callback_for(spec) if callback_for else None)
                    error = None
                    break
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - a trial's failure is recorded, not fatal to the study
                    error = _one_line(exc)
            outcome = Outcome(spec["name"], "failed" if error else "done", result, error, attempts)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        return outcomes


def ray_module():
    """Import ray, or fail with one line naming the extra."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor: 'ray' needs Ray; install the extra: pip install 'deepmad-evo[ray]'") from None
    return ray


def ray_init(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to a Ray cluster (``address``, e.g. "auto") or start a local instance; True if we started it.

    The workers must import deepmad_evo: on a cluster install the package on every node; for a local
    instance the folder holding this package is put on the workers' PYTHONPATH.
    """
    ray = ray_module()
    if ray.is_initialized():
        return False
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                  runtime_env={"env_vars": {"PYTHONPATH": path}})
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return True


def trial_resources(cpus_per_trial: int = 1) -> dict:
    """One trial per GPU where the cluster has GPUs, else ``cpus_per_trial`` CPUs per trial."""
    ray = ray_module()
    gpus = ray.cluster_resources().get("GPU", 0)
    return {"num_cpus": cpus_per_trial, "num_gpus": 1 if gpus else 0}


class RayExecutor:
    """Run trials as Ray tasks: one per GPU on a GPU cluster, else one per ``cpus_per_trial`` CPUs."""

    name = "ray"

    def __init__(self, retries: int = 1, address: str | None = None, cpus_per_trial: int = 1,
                 num_cpus: int | None = None) -> None:
        self.retries, self.address, self.cpus_per_trial, self.num_cpus = retries, address, cpus_per_trial, num_cpus

    def run(self, fn: Callable[..., dict], specs: Sequence[dict], on_outcome: Callable[[Outcome], None] | None = None,
            callback_for: Callable[[dict], Callable] | None = None) -> list[Outcome]:
        """Submit every spec as a task ``fn(spec, None)``; progress arrives per finished trial."""
        ray = ray_module()
        started = ray_init(self.address, self.num_cpus)
        try:
            resources = trial_resources(self.cpus_per_trial)
            # Ray retries the task itself (a crashed worker too) up to `retries` more times.
            task = ray.remote(_run_remote).options(max_retries=self.retries, retry_exceptions=True, **resources)
            pending = {task.remote(fn, spec, resources["num_cpus"]): spec for spec in specs}
            outcomes: dict[str, Outcome] = {}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    spec = pending.pop(ready[0])
                    try:
                        outcome = Outcome(spec["name"], "done", ray.get(ready[0]), None, 1)
                    except Exception as exc:  # noqa: BLE001 - RayTaskError etc.: recorded, not fatal
                        outcome = Outcome(spec["name"], "failed", None, _one_line(getattr(exc, "cause", None) or exc),
                                          self.retries + 1)
                    outcomes[spec["name"]] = outcome
                    if on_outcome:
                        on_outcome(outcome)
            except KeyboardInterrupt:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
            return [outcomes[s["name"]] for s in specs]
        finally:
            if started:
                ray.shutdown()


def _run_remote(fn, spec: dict, threads: int) -> dict:
    return fn({**spec, "threads": spec.get("threads") or threads}, None)


def make_executor(name: str, retries: int = 1, address: str | None = None, cpus_per_trial: int = 1):
    """The executor called ``name`` ("local" or "ray")."""
    if name == "local":
        return LocalExecutor(retries)
    if name == "ray":
        ray_module()
        return RayExecutor(retries, address, cpus_per_trial)
    raise ValueError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
