"""Depth moves with every width re-balanced: a search stage the integer neighbourhood cannot make.

At a local optimum of the integer search several budgets are active at once (ρ, MACs, params),
so one more block in a stage only pays off when *every* width is re-balanced at the same time:
no one- or two-variable step reaches it. This module solves that re-balance directly. For a
fixed depth vector and fixed kernels, the widths (stem, stage channels, expansions) are made
continuous in the grid's index space (linear interpolation between grid values) and the *exact*
population objective (``objective.evaluate_population``, which accepts real inputs) is maximised
by SLSQP with forward-difference gradients taken in one vectorised pass. That is ~10× cheaper
than the relaxation of ``relax`` (no dual numbers) and scores the network itself, not a relaxed
upper bound, so it ranks depth vectors faithfully. The best-ranked depth vectors are rounded
(every floor/ceil combination of the widths in one pass), repaired and polished by the integer
local search.

``depth_moves`` is the stage: hill climbing over depth vectors (one block more or less in a
stage, or one block moved between two stages), each scored by its re-balanced widths.
Deterministic: no randomness at all.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import replace

import numpy as np
from scipy.optimize import LinearConstraint, minimize, nnls

from .objective import evaluate_population
from .polish import local_search, repair, violation
from .problem import DeepMADProblem, constraint_values
from .units import smooth_squeeze

_STEP = 1e-4  # forward-difference step, in grid-index units
INACTIVE_SLACK = 2e-3  # a move breaking a budget inactive at the incumbent by more than this is screened last


class WidthProblem:
    """The widths of one depth vector and kernel vector, continuous in grid-index space."""

    def __init__(self, problem: DeepMADProblem, x: np.ndarray) -> None:
        space = problem.space
        self.problem, self.space, self.x = problem, space, np.asarray(x, dtype=np.int64)
        S = self.S = space.num_stages
        self.n = 1 + 2 * S
        stem_t, ch_t, ex_t, _ = space._tables
        self.tables = tuple((np.arange(len(t), dtype=float), np.asarray(t, float)) for t in (stem_t, ch_t, ex_t))
        _, _, _, kernel, depth = space.decode(self.x[None])
        self.kernel, self.depth = kernel, depth
        xl, xu = space.bounds
        self.lower, self.upper = xl[: self.n].astype(float), xu[: self.n].astype(float)
        self.budget = problem.budget
        # Monotone channels are linear constraints of the solve; latency has no model here.
        self._budget = replace(problem.budget, monotone=False, latency=None, latency_table=None)
        self._cache: dict = {}
        self.calls, self.max_calls = 0, np.inf

    def values(self, Z: np.ndarray, kernel: np.ndarray | None = None,
               depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective (N,) and constraint matrix G (N, m) of real index vectors Z (N, 1 + 2S); no monotone column.

        ``kernel`` and ``depth`` (N, S) default to this problem's, repeated.
        """
        S, (stem_t, ch_t, ex_t) = self.S, self.tables
        stem = np.interp(Z[:, 0], *stem_t)
        out = np.interp(Z[:, 1:1 + S], *ch_t)
        btn = np.maximum(self.space.multiple, np.interp(Z[:, 1 + S:], *ex_t) * out)
        n = len(Z)
        p = self.problem
        kernel = np.repeat(self.kernel, n, 0) if kernel is None else kernel
        depth = np.repeat(self.depth, n, 0) if depth is None else depth
        with smooth_squeeze():  # the SE width's staircase would stall the finite differences
            ev = evaluate_population(self.space.template, stem, out, btn.astype(float), kernel, depth, p.alpha,
                                     p.beta, p.convention)
        return ev.objective, constraint_values(ev, out, self._budget, 1.0)

    def _at(self, z: np.ndarray):
        key = z.tobytes()
        if key not in self._cache:
            self.calls += 1
            if self.calls > self.max_calls:
                raise _CallLimit
            Z = np.vstack([z, z + _STEP * np.eye(self.n)])
            f, G = self.values(Z)
            self._cache = {key: (f[0], (f[1:] - f[0]) / _STEP, G[0], (G[1:] - G[0]).T / _STEP)}
        return self._cache[key]

    def solve(self, z0: np.ndarray, maxiter: int = 30, max_calls: int = 40) -> tuple[np.ndarray, float]:
        """SLSQP from z0 (clipped into the bounds); returns (z, objective) of its final point (may be infeasible).

        At most ``maxiter`` iterations and ``max_calls`` evaluations (SLSQP's line search can spend
        a hundred on a depth vector whose widths cannot meet the budgets).
        """
        z0 = np.clip(np.asarray(z0, dtype=float), self.lower, self.upper)
        self.calls, self.max_calls, last = 0, max_calls, [z0]
        scale = max(1.0, abs(float(self._at(z0)[0])))
        S = self.S
        cons = [{"type": "ineq", "fun": lambda z: -self._at(z)[2], "jac": lambda z: -self._at(z)[3]}]
        if self.budget.monotone and S > 1:
            A = np.zeros((S - 1, self.n))
            for i in range(S - 1):
                A[i, 1 + i], A[i, 2 + i] = -1.0, 1.0
            cons.append(LinearConstraint(A, 0.0, np.inf))

        def objective(z):
            f, df, _, _ = self._at(z)
            last[0] = np.array(z)
            return -f / scale, -df / scale

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                z = minimize(objective, z0, jac=True, method="SLSQP", bounds=list(zip(self.lower, self.upper)),
                             constraints=cons, options={"maxiter": maxiter, "ftol": 1e-9}).x
            except _CallLimit:
                z = last[0]
        z = np.clip(z, self.lower, self.upper)
        self.max_calls = np.inf
        return z, float(self._at(z)[0])

    def feasible(self, z: np.ndarray, tol: float = 1e-4) -> bool:
        return bool(np.all(self._at(z)[2] <= tol))

    def round(self, z: np.ndarray, moves: np.ndarray, max_free: int = 11) -> np.ndarray | None:
        """The best feasible integer vector among the floor/ceil combinations of z's widths.

        When none is feasible (integer bottlenecks are rounded to the channel multiple, which the
        continuous widths are not), the least violating one is repaired by a least-violation
        descent over ``moves`` (``polish.repair``); None when that gets stuck.
        """
        lo = np.floor(z).astype(np.int64)
        frac = z - lo
        free = [i for i in np.argsort(-np.minimum(frac, 1 - frac), kind="stable") if 1e-9 < frac[i] < 1 - 1e-9]
        free = free[:max_free]
        base = np.where(frac >= 0.5, lo + 1, lo)
        X = np.repeat(self.x[None], 2 ** len(free), axis=0)
        X[:, : self.n] = base
        bits = (np.arange(2 ** len(free))[:, None] >> np.arange(len(free))) & 1
        for b, i in zip(bits.T, free):
            X[:, i] = lo[i] + b
        xl, xu = self.space.bounds
        X = np.clip(X, xl, xu)
        if self.budget.monotone:
            X = self.space.repair_monotone(X)
        ev, G = self.problem.evaluate_vectors(X)
        cv = violation(G)
        if (cv <= 0).any():
            return X[int(np.argmax(np.where(cv <= 0, ev.objective, -np.inf)))]
        repaired = repair(self.problem, X[int(np.argmin(cv))], moves)
        return None if repaired is None else repaired[0]


class _CallLimit(Exception):
    """Raised inside SLSQP when a solve has used its evaluations."""


def depth_neighbours(depth: np.ndarray, lo, hi) -> np.ndarray:
    """Depth vectors one block away, in a fixed order: ±1 in one stage, or one block moved between two stages."""
    S = len(depth)
    steps = [s * np.eye(S, dtype=np.int64)[i] for i in range(S) for s in (1, -1)]
    steps += [np.eye(S, dtype=np.int64)[i] - np.eye(S, dtype=np.int64)[j] for i, j in itertools.permutations(range(S), 2)]
    D = np.asarray(depth)[None] + np.array(steps)
    return D[np.all((D >= np.asarray(lo)) & (D <= np.asarray(hi)), axis=1)]


def _multipliers(wp: "WidthProblem", z: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """KKT multipliers of the width optimum z: ∇f = Σ λ_i ∇g_i over the active constraints (λ ≥ 0, NNLS)."""
    f, df, g, dG = wp._at(z)
    lam = np.zeros(len(g))
    active = np.flatnonzero(g > -tol)
    if len(active):
        free = (z > wp.lower + 1e-6) & (z < wp.upper - 1e-6)  # gradients vanish only along free widths
        lam[active] = nnls(dG[active][:, free].T, df[free])[0]
    return lam


def depth_moves(problem: DeepMADProblem, x: np.ndarray, fx: float, moves: np.ndarray, rounds: int = 3,
                screen: int = 6, polish: int = 2, maxiter: int = 30) -> tuple[np.ndarray, float]:
    """Hill climbing over depth vectors from ``x``, each scored by its re-balanced widths.

    Each round solves the incumbent's own widths (SLSQP in continuous grid-index space) and reads
    the KKT multipliers λ of its active budgets; every depth vector one block away is screened by
    the Lagrangian f − λ·g at those widths (one vectorised pass: the first-order estimate of its
    re-balanced value, within ~0.1 % where no inactive budget becomes active), the ``screen``
    best are re-balanced by SLSQP, the ``polish`` best of those rounded and polished by the
    integer local search (``moves``), and the round moves to the best polished design if it
    beats the incumbent. Stops after ``rounds`` rounds or when a round
    finds nothing better. Returns (x, objective).
    """
    space = problem.space
    S = space.num_stages
    dcols = slice(1 + 3 * S, 1 + 4 * S)
    lo, hi = np.asarray(space.depth_min), np.asarray(space.depth_max)
    tried = {tuple(x[dcols])}
    for r in range(rounds):
        own = WidthProblem(problem, x)
        z0, _ = own.solve(x[: own.n].astype(float), maxiter)
        if not own.feasible(z0):
            z0 = x[: own.n].astype(float)
        lam = _multipliers(own, z0)
        D = np.array([d for d in depth_neighbours(x[dcols], lo, hi) if tuple(d) not in tried])
        if not len(D):
            break
        f, G = own.values(np.repeat(z0[None], len(D), 0), np.repeat(own.kernel, len(D), 0), D)
        # A budget inactive at the incumbent (λ = 0) is not priced by the Lagrangian: moves that
        # break one at the incumbent's widths (ρ of an early prefix, mostly) go last.
        broken = np.any(G[:, lam == 0] > INACTIVE_SLACK, axis=1)
        order = np.lexsort((-(f - G @ lam), broken))  # ties: the fixed order of depth_neighbours
        scored = []
        for k in order[:screen]:
            d = D[k]
            tried.add(tuple(d))
            y = x.copy()
            y[dcols] = d
            wp = WidthProblem(problem, y)
            z, v = wp.solve(z0, maxiter)
            if wp.feasible(z):
                scored.append((v, tuple(d), wp, z))
        scored.sort(key=lambda s: (-s[0], s[1]))
        best = (x, fx)
        for v, _, wp, z in scored[:polish]:
            xr = wp.round(z, moves)
            if xr is None:
                continue
            xp, fp = local_search(problem, xr, moves)
            if fp > best[1] + 1e-9:
                best = (xp, fp)
        if best[1] <= fx + 1e-9:
            break
        x, fx = best
        tried.add(tuple(x[dcols]))
    return x, fx
