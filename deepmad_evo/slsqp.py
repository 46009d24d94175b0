"""SLSQP runs stepped by the caller, so that many of them can share one batched evaluation.

One evaluation of the DeepMAD objective costs about the same for one point as for several
hundred (numpy's per-call overhead dominates), so running many SLSQP solves side by side and
evaluating all their waiting points in one call makes each of them several times cheaper. SciPy
≥ 1.16 exposes SLSQP as a reverse-communication routine (``scipy.optimize._slsqplib.slsqp``: it
returns whenever it needs the objective and constraints, or their gradients, at a point); ``Run``
drives one such solve: the same algorithm ``scipy.optimize.minimize(method="SLSQP")`` runs for
"minimise −f/scale subject to c(z) ≥ 0 and A·z ≥ 0 within [lower, upper]". With an older SciPy
``AVAILABLE`` is False and callers solve one by one through ``minimize``.

Used by the relaxation's branch and bound (``relax.lockstep``) and by the width re-balance of
depth moves (``rebalance``).
"""

from __future__ import annotations

import time

import numpy as np

try:  # private, but the stable core of scipy.optimize's own SLSQP driver since SciPy 1.16
    from scipy.optimize._slsqplib import slsqp as _slsqp
except ImportError:  # pragma: no cover - older SciPy: callers fall back to scipy.optimize.minimize
    _slsqp = None

AVAILABLE = _slsqp is not None

MESSAGES = {0: "Optimization terminated successfully", 2: "More equality constraints than independent variables",
            3: "More than 3*n iterations in LSQ subproblem", 4: "Inequality constraints incompatible",
            5: "Singular matrix E in LSQ subproblem", 6: "Singular matrix C in LSQ subproblem",
            7: "Rank-deficient equality constraint subproblem HFTI",
            8: "Positive directional derivative for linesearch", 9: "Iteration limit reached"}


class Run:
    """One SLSQP run: maximise f subject to c(z) ≥ 0 (``n_constraints`` of them) and A·z ≥ 0 in [lower, upper].

    ``pending`` is the point the run waits to have evaluated (None once finished, ``status`` set);
    ``feed`` takes its values. The objective is scaled by max(1, |f(z0)|), as ``minimize`` callers do.
    """

    def __init__(self, z0: np.ndarray, lower: np.ndarray, upper: np.ndarray, n_constraints: int, maxiter: int,
                 ftol: float, max_evaluations: int | None = None, A: np.ndarray | None = None) -> None:
        self.lower, self.upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        self.x = np.clip(np.asarray(z0, dtype=float), self.lower, self.upper)
        self.max_evaluations = max_evaluations
        self.A = A
        n = len(self.x)
        self.J = n_constraints
        m = n_constraints + (0 if A is None else len(A))
        self.n, self.m = n, m
        self.state = {"acc": ftol, "alpha": 0.0, "f0": 0.0, "gs": 0.0, "h1": 0.0, "h2": 0.0, "h3": 0.0, "h4": 0.0,
                      "t": 0.0, "t0": 0.0, "tol": 10.0 * ftol, "exact": 0, "inconsistent": 0, "reset": 0, "iter": 0,
                      "itermax": int(maxiter), "line": 0, "m": m, "meq": 0, "mode": 0, "n": n}
        size = n * (n + 1) // 2 + 3 * m * n + 9 * m + 8 * n * n + 35 * n + 28
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

    def feed(self, f: float, grad: np.ndarray, c: np.ndarray, jac: np.ndarray) -> None:
        """Take f, ∇f, c (J,) and ∂c/∂z (J, n) at ``pending``; step the solver until it needs another point or ends."""
        z = self.pending
        self.evaluations += 1
        values = (float(f), np.asarray(grad, dtype=float), np.asarray(c, dtype=float), np.asarray(jac, dtype=float))
        self.last = (z, values)
        first = self.scale is None
        if first:
            self.scale = max(1.0, abs(values[0]))
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

    def _load(self, values, function: bool, gradients: bool) -> None:
        """SLSQP's inputs: minimise −f/scale subject to c(z) ≥ 0, A·z ≥ 0."""
        f, grad, c, jac = values
        J = self.J
        if function:
            self.fx = -f / self.scale
            self.d[:J] = c
            if self.A is not None:
                self.d[J:] = self.A @ self.last[0]
        if gradients:
            self.g = -grad / self.scale
            self.C[:J] = jac
            if self.A is not None:
                self.C[J:] = self.A

    def _finish(self, mode: int) -> None:
        self.status = mode
        self.seconds = time.perf_counter() - self.t0

    def result(self) -> tuple[np.ndarray, dict]:
        """The final point (clipped into the bounds) and what ``minimize`` would report about the run."""
        message = (f"Evaluation limit ({self.max_evaluations}) reached" if self.status == -1
                   else MESSAGES.get(self.status, f"SLSQP exit mode {self.status}"))
        return np.clip(self.x, self.lower, self.upper), {
            "status": int(self.status), "message": message,
            "iterations": -1 if self.status == -1 else int(self.state["iter"]), "evaluations": self.evaluations,
            "seconds": self.seconds}
