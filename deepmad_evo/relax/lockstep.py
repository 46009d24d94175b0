"""Many SLSQP runs on one relaxation stepped in lockstep, their evaluations batched into one ``values`` call.

One evaluation of the relaxation costs about the same for one point as for sixty-four (numpy's
per-call overhead dominates the Dual arithmetic), so running the SLSQP solves of a branch and
bound side by side makes each of them several times cheaper. SciPy ≥ 1.16 exposes SLSQP as a
reverse-communication routine (``scipy.optimize._slsqplib.slsqp``: it returns whenever it needs
the objective and constraints, or their gradients, at a point), which is what this drives; each
run is the same algorithm ``Relaxation.solve`` runs through ``scipy.optimize.minimize`` (same
start clipping, objective scaling, constraint order and evaluation limit). With an older SciPy
the runs are solved one by one by ``Relaxation.solve``.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .relaxation import Relaxation, RelaxedValues

try:  # private, but the stable core of scipy.optimize's own SLSQP driver since SciPy 1.16
    from scipy.optimize._slsqplib import slsqp as _slsqp
except ImportError:  # pragma: no cover - older SciPy: the serial fallback below
    _slsqp = None

MESSAGES = {0: "Optimization terminated successfully", 2: "More equality constraints than independent variables",
            3: "More than 3*n iterations in LSQ subproblem", 4: "Inequality constraints incompatible",
            5: "Singular matrix E in LSQ subproblem", 6: "Singular matrix C in LSQ subproblem",
            7: "Rank-deficient equality constraint subproblem HFTI",
            8: "Positive directional derivative for linesearch", 9: "Iteration limit reached"}


class _Run:
    """One SLSQP run: its solver state and the point it waits to have evaluated (None when finished)."""

    def __init__(self, relax: Relaxation, z0: np.ndarray, lower, upper, maxiter: int, ftol: float,
                 max_evaluations: int | None, linear, expansion) -> None:
        self.expansion = expansion
        self.lower = relax.lower if lower is None else np.maximum(lower, relax.lower)
        self.upper = relax.upper if upper is None else np.minimum(upper, relax.upper)
        self.x = np.clip(np.asarray(z0, dtype=float), self.lower, self.upper)
        self.max_evaluations = max_evaluations
        self.A = None if linear is None else linear.A
        n = relax.n_var
        m = len(relax.constraint_names) + (0 if self.A is None else len(self.A))
        self.n, self.m = n, m
        self.state = {"acc": ftol, "alpha": 0.0, "f0": 0.0, "gs": 0.0, "h1": 0.0, "h2": 0.0, "h3": 0.0, "h4": 0.0,
                      "t": 0.0, "t0": 0.0, "tol": 10.0 * ftol, "exact": 0, "inconsistent": 0, "reset": 0, "iter": 0,
                      "itermax": int(maxiter), "line": 0, "m": m, "meq": 0, "mode": 0, "n": n}
        size = n * (n + 1) // 2 + 3 * m * n - (m + 5 * n + 7) * 0 + 9 * m + 8 * n * n + 35 * n + 28
        self.buffer = np.zeros(max(size, 1))
        self.indices = np.zeros(max(m + 2 * n + 2, 1), dtype=np.int32)
        self.mult = np.zeros(max(1, m + 2 * n + 2))
        self.C = np.zeros((max(1, m), n), order="F")
        self.d = np.zeros(max(1, m))
        self.fx, self.g = 0.0, np.zeros(n)
        self.scale = None
        self.evaluations = 0
        self.last = None  # (point, values) of the latest evaluation
        self.pending: np.ndarray | None = self.x.copy()  # the start's evaluation comes first
        self.status, self.t0, self.seconds = None, time.perf_counter(), 0.0

    def feed(self, values: RelaxedValues) -> None:
        """Take the evaluation of ``pending`` and step the solver until it needs another point or ends."""
        z = self.pending
        self.evaluations += 1
        self.last = (z, values)
        first = self.scale is None
        if first:
            self.scale = max(1.0, abs(float(values.objective[0])))
        self._load(values, function=first or self.state["mode"] == 1, gradients=first or self.state["mode"] == -1)
        self.pending = None
        while True:
            _slsqp(self.state, self.fx, self.g, self.C, self.d, self.x, self.mult, self.lower, self.upper,
                   self.buffer, self.indices)
            mode = self.state["mode"]
            if mode not in (1, -1):
                return self._finish(mode)
            z = np.clip(self.x, self.lower, self.upper)
            if np.array_equal(z, self.last[0]):  # gradients (or values) at the point just evaluated
                self._load(self.last[1], function=mode == 1, gradients=mode == -1)
                continue
            if mode == -1:  # never seen: SLSQP asks for gradients only where it evaluated last
                self.pending = z
                return None
            if self.max_evaluations is not None and self.evaluations >= self.max_evaluations:
                self.x = self.last[0].copy()
                return self._finish(-1)
            self.pending = z
            return None

    def _load(self, v: RelaxedValues, function: bool, gradients: bool) -> None:
        """SLSQP's inputs from the relaxation's values: minimise −objective/scale subject to c(z) ≥ 0."""
        J = v.constraints.shape[1]
        if function:
            self.fx = float(-v.objective[0] / self.scale)
            self.d[:J] = -v.constraints[0]
            if self.A is not None:
                self.d[J:] = self.A @ self.last[0]
        if gradients:
            self.g = -v.objective_grad[0] / self.scale
            self.C[:J] = -v.constraints_jac[0]
            if self.A is not None:
                self.C[J:] = self.A

    def _finish(self, mode: int) -> None:
        self.status = mode
        self.seconds = time.perf_counter() - self.t0

    def result(self) -> tuple[np.ndarray, dict]:
        message = (f"Evaluation limit ({self.max_evaluations}) reached" if self.status == -1
                   else MESSAGES.get(self.status, f"SLSQP exit mode {self.status}"))
        return np.clip(self.x, self.lower, self.upper), {
            "status": int(self.status), "message": message,
            "iterations": -1 if self.status == -1 else int(self.state["iter"]), "evaluations": self.evaluations,
            "seconds": self.seconds}


def _values_row(values: RelaxedValues, k: int) -> RelaxedValues:
    """Row k of a batch of values, as a batch of one."""
    return RelaxedValues(*(a[k:k + 1] for a in (values.objective, values.objective_grad, values.constraints,
                                                values.constraints_jac, values.entropy,
                                                values.weighted_depth_penalty, values.rho_prefix, values.macs,
                                                values.params, values.layers)))


class Lockstep:
    """A pool of SLSQP runs on one relaxation; ``step`` evaluates every waiting point in one call.

    Args:
        relax: the relaxation every run solves (with its own variable bounds).
        maxiter, ftol, max_evaluations: as for ``Relaxation.solve``.
    """

    def __init__(self, relax: Relaxation, maxiter: int = 200, ftol: float = 1e-10,
                 max_evaluations: int | None = None) -> None:
        self.relax, self.maxiter, self.ftol, self.max_evaluations = relax, maxiter, ftol, max_evaluations
        self.linear = relax.linear()
        self.runs: list[tuple[object, _Run | tuple]] = []
        self.evaluation_calls = 0

    def __len__(self) -> int:
        return len(self.runs)

    def add(self, key, z0: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None,
            expansion: tuple | None = None) -> None:
        """Start a run from z0 within [lower, upper] (and ``expansion``, see ``Relaxation.values``);
        ``key`` comes back with its result."""
        if _slsqp is None:
            self.runs.append((key, self.relax.solve(z0, maxiter=self.maxiter, ftol=self.ftol, lower=lower,
                                                    upper=upper, max_evaluations=self.max_evaluations,
                                                    expansion=expansion)))
        else:
            self.runs.append((key, _Run(self.relax, z0, lower, upper, self.maxiter, self.ftol,
                                        self.max_evaluations, self.linear, expansion)))

    def step(self) -> list[tuple[object, np.ndarray, dict]]:
        """One batched evaluation for every waiting run; returns the runs that ended, in the order they were added."""
        waiting = [r for _, r in self.runs if isinstance(r, _Run) and r.pending is not None]
        if waiting:
            expansion = None
            if any(r.expansion is not None for r in waiting):
                full = (np.zeros(self.relax.S, dtype=int), np.full(self.relax.S, len(self.relax.expansions) - 1))
                expansion = tuple(np.stack([np.asarray((r.expansion or full)[side]) for r in waiting])
                                  for side in (0, 1))
            values = self.relax.values(np.stack([r.pending for r in waiting]), expansion=expansion)
            self.evaluation_calls += 1
            for k, r in enumerate(waiting):
                r.feed(_values_row(values, k))
        done, running = [], []
        for key, r in self.runs:
            if isinstance(r, tuple):
                done.append((key, *r))
            elif r.status is not None:
                done.append((key, *r.result()))
            else:
                running.append((key, r))
        self.runs = running
        return done


def solve_many(relax: Relaxation, starts: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
               maxiter: int = 200, ftol: float = 1e-10,
               max_evaluations: int | None = None) -> list[tuple[np.ndarray, dict]]:
    """``Relaxation.solve`` for every (z0, lower, upper) of ``starts``, side by side; results in that order."""
    pool = Lockstep(relax, maxiter, ftol, max_evaluations)
    for i, (z0, lower, upper) in enumerate(starts):
        pool.add(i, z0, lower, upper)
    results: dict[int, tuple] = {}
    while len(pool):
        for i, z, info in pool.step():
            results[i] = (z, info)
    return [results[i] for i in range(len(starts))]
