"""Many SLSQP runs on one relaxation stepped in lockstep, their evaluations batched into one ``values`` call.

One evaluation of the relaxation costs about the same for one point as for sixty-four (numpy's
per-call overhead dominates the Dual arithmetic), so running the SLSQP solves of a branch and
bound side by side makes each of them several times cheaper. Each run is a ``slsqp.Run`` (SciPy's
reverse-communication SLSQP): the same algorithm ``Relaxation.solve`` runs through
``scipy.optimize.minimize`` (same start clipping, objective scaling, constraint order and
evaluation limit). With an older SciPy the runs are solved one by one by ``Relaxation.solve``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..slsqp import AVAILABLE, Run
from .relaxation import Relaxation, RelaxedValues


class _Run(Run):
    """One SLSQP run on the relaxation (its own variable bounds and depth-expansion box)."""

    def __init__(self, relax: Relaxation, z0: np.ndarray, lower, upper, maxiter: int, ftol: float,
                 max_evaluations: int | None, linear, expansion) -> None:
        self.expansion = expansion
        lower = relax.lower if lower is None else np.maximum(lower, relax.lower)
        upper = relax.upper if upper is None else np.minimum(upper, relax.upper)
        super().__init__(z0, lower, upper, len(relax.constraint_names), maxiter, ftol, max_evaluations,
                         None if linear is None else linear.A)

    def feed_values(self, values: RelaxedValues) -> None:
        """Feed a batch-of-one ``RelaxedValues`` (constraints g ≤ 0, so c = −g)."""
        self.feed(values.objective[0], values.objective_grad[0], -values.constraints[0], -values.constraints_jac[0])


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
        if not AVAILABLE:
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
                r.feed_values(_values_row(values, k))
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
