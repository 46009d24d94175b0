"""Depth moves with every width re-balanced: a search stage the integer neighbourhood cannot make.

At a local optimum of the integer search several budgets are active at once (ρ, MACs, params),
so one more block in a stage only pays off when *every* width is re-balanced at the same time:
no one- or two-variable step reaches it. This module solves that re-balance directly. For a
fixed depth vector and fixed kernels, the widths (stem, stage channels, expansions) are made
continuous in the grid's index space (``WidthProblem``: linear interpolation between grid values)
and the *exact* population objective (``objective.evaluate_population``, which accepts real
inputs) is maximised by SLSQP with forward-difference gradients taken in one vectorised pass;
the SLSQP runs of many depth vectors advance side by side, their evaluations batched into one
call (``solve_widths``, ``slsqp.Run``). The value scores the network itself, not a relaxed upper
bound, so it ranks depth vectors far better than the integer designs a search happened to reach.

``depth_moves`` is the stage: a beam search over depth vectors (one block more or less in a
stage, or one block moved between two stages), started at the design's depths and at the
roundings of a relaxed optimum's depths; the best are rounded back to the grid on its exact
bottleneck widths (``round_widths``) and polished by the integer local search.
Deterministic: no randomness at all.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import replace

import numpy as np
from scipy.optimize import LinearConstraint, minimize

from .objective import evaluate_population
from .polish import local_search, repair, violation
from .problem import DeepMADProblem, constraint_values
from .slsqp import AVAILABLE, Run
from .units import smooth_squeeze

_STEP = 1e-4  # forward-difference step, in grid-index units


class WidthProblem:
    """The widths of one depth vector and kernel vector, continuous in grid-index space."""

    def __init__(self, problem: DeepMADProblem, x: np.ndarray, exact_btn: bool = False) -> None:
        space = problem.space
        self.problem, self.space, self.x = problem, space, np.asarray(x, dtype=np.int64)
        self.exact_btn = exact_btn
        S = self.S = space.num_stages
        self.n = 1 + 2 * S
        stem_t, ch_t, ex_t, _ = space._tables
        self.tables = tuple((np.arange(len(t), dtype=float), np.asarray(t, float)) for t in (stem_t, ch_t, ex_t))
        # The grid's bottleneck width per (channel index, expansion index), rounded to the channel
        # multiple exactly as ``SearchSpace.decode`` does; interpolated bilinearly between grid points.
        m = space.multiple
        ch, ex = np.asarray(ch_t, float), np.asarray(ex_t, float)
        self.btn_table = np.maximum(m, np.floor(ex[None, :] * ch[:, None] / m + 0.5) * m)
        _, _, _, kernel, depth = space.decode(self.x[None])
        self.kernel, self.depth = kernel, depth
        xl, xu = space.bounds
        self.lower, self.upper = xl[: self.n].astype(float), xu[: self.n].astype(float)
        self.budget = problem.budget
        # Monotone channels are linear constraints of the solve; latency has no model here.
        # ρ = max of the prefix ρ_j is not smooth where two prefixes tie: each prefix is its own
        # constraint here, which lets SLSQP converge in far fewer evaluations.
        self._budget = replace(problem.budget, rho=None, monotone=False, latency=None, latency_table=None)
        self._cache: dict = {}
        self.calls, self.max_calls = 0, np.inf
        self.A = None  # monotone channels: out_{i+1} − out_i ≥ 0, linear in index space
        if self.budget.monotone and S > 1:
            self.A = np.zeros((S - 1, self.n))
            for i in range(S - 1):
                self.A[i, 1 + i], self.A[i, 2 + i] = -1.0, 1.0

    def values(self, Z: np.ndarray, kernel: np.ndarray | None = None,
               depth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective (N,) and constraint matrix G (N, m) of real index vectors Z (N, 1 + 2S); no monotone column.

        ``kernel`` and ``depth`` (N, S) default to this problem's, repeated.
        """
        S, (stem_t, ch_t, ex_t) = self.S, self.tables
        stem = np.interp(Z[:, 0], *stem_t)
        out = np.interp(Z[:, 1:1 + S], *ch_t)
        if self.exact_btn:
            btn = _bilinear(self.btn_table, Z[:, 1:1 + S], Z[:, 1 + S:])
        else:
            btn = np.maximum(self.space.multiple, np.interp(Z[:, 1 + S:], *ex_t) * out)
        n = len(Z)
        p = self.problem
        kernel = np.repeat(self.kernel, n, 0) if kernel is None else kernel
        depth = np.repeat(self.depth, n, 0) if depth is None else depth
        with smooth_squeeze():  # the SE width's staircase would stall the finite differences
            ev = evaluate_population(self.space.template, stem, out, btn.astype(float), kernel, depth, p.alpha,
                                     p.beta, p.convention)
        G = constraint_values(ev, out, self._budget, 1.0)
        if self.budget.rho is not None:
            G = np.column_stack([ev.rho_prefix / self.budget.rho - 1.0, G])
        return ev.objective, G

    def differences(self, Z: np.ndarray, kernel: np.ndarray | None = None, depth: np.ndarray | None = None):
        """f (N,), ∇f (N, n), G (N, m), ∂G/∂z (N, m, n) at the rows of Z by forward differences, in one call."""
        N, n = Z.shape
        rows = (Z[:, None, :] + np.concatenate([np.zeros((1, n)), _STEP * np.eye(n)])[None]).reshape(-1, n)
        kernel = np.repeat(self.kernel, N, 0) if kernel is None else kernel
        depth = np.repeat(self.depth, N, 0) if depth is None else depth
        f, G = self.values(rows, np.repeat(kernel, n + 1, 0), np.repeat(depth, n + 1, 0))
        f, G = f.reshape(N, n + 1), G.reshape(N, n + 1, -1)
        return f[:, 0], (f[:, 1:] - f[:, :1]) / _STEP, G[:, 0], (G[:, 1:] - G[:, :1]).transpose(0, 2, 1) / _STEP

    def _at(self, z: np.ndarray):
        key = z.tobytes()
        if key not in self._cache:
            self.calls += 1
            if self.calls > self.max_calls:
                raise _CallLimit
            f, df, g, dG = self.differences(z[None])
            self._cache = {key: (f[0], df[0], g[0], dG[0])}
        return self._cache[key]

    def solve(self, z0: np.ndarray, maxiter: int = 30, max_calls: int = 40) -> tuple[np.ndarray, float]:
        """SLSQP from z0 (clipped into the bounds); returns (z, objective) of its final point (may be infeasible).

        At most ``maxiter`` iterations and ``max_calls`` evaluations (SLSQP's line search can spend
        a hundred on a depth vector whose widths cannot meet the budgets). The same run as one
        row of ``solve_widths``.
        """
        if AVAILABLE:
            Z, f, _ = solve_widths(self, z0[None], maxiter=maxiter, max_calls=max_calls)
            return Z[0], float(f[0])
        z0 = np.clip(np.asarray(z0, dtype=float), self.lower, self.upper)
        self.calls, self.max_calls, last = 0, max_calls, [z0]
        scale = max(1.0, abs(float(self._at(z0)[0])))
        cons = [{"type": "ineq", "fun": lambda z: -self._at(z)[2], "jac": lambda z: -self._at(z)[3]}]
        if self.A is not None:
            cons.append(LinearConstraint(self.A, 0.0, np.inf))

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
        return bool(np.all(self.values(np.asarray(z, dtype=float)[None])[1] <= tol))


def _bilinear(table: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """table interpolated bilinearly at real indices (i, j) (clipped to the table), exact at integers."""
    def corner(v, size):
        v = np.clip(v, 0, size - 1)
        lo = np.clip(np.floor(v).astype(np.int64), 0, max(size - 2, 0))
        return lo, np.minimum(lo + 1, size - 1), v - lo
    i0, i1, t = corner(i, table.shape[0])
    j0, j1, u = corner(j, table.shape[1])
    return ((1 - t) * (1 - u) * table[i0, j0] + t * (1 - u) * table[i1, j0] + (1 - t) * u * table[i0, j1]
            + t * u * table[i1, j1])


class _CallLimit(Exception):
    """Raised inside SLSQP when a solve has used its evaluations."""


def solve_widths(wp: WidthProblem, Z0: np.ndarray, depths: np.ndarray | None = None, maxiter: int = 30,
                 max_calls: int = 40, lower: np.ndarray | None = None,
                 upper: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``WidthProblem.solve`` from every row of Z0 (K, n), side by side, for ``depths`` (K, S; default
    ``wp``'s own) and within the bounds ``lower`` / ``upper`` (K, n; default ``wp``'s): one batched
    evaluation per step of all waiting runs (``slsqp.Run``).

    Returns the final points Z (K, n), their objectives (K,) and constraint matrix G (K, m; feasible
    where every entry ≤ a small tolerance), each run exactly as alone.
    """
    Z0 = np.atleast_2d(np.asarray(Z0, dtype=float))
    K = len(Z0)
    D = np.repeat(wp.depth, K, 0) if depths is None else np.asarray(depths)
    if not AVAILABLE:  # pragma: no cover - older SciPy: one by one
        out = []
        for z0, d in zip(Z0, D):
            x = wp.x.copy()
            x[1 + 3 * wp.S:] = d
            out.append(WidthProblem(wp.problem, x).solve(z0, maxiter, max_calls)[0])
        Z = np.array(out)
        return (Z, *wp.values(Z, np.repeat(wp.kernel, K, 0), D))
    m = wp.values(np.clip(Z0[:1], wp.lower, wp.upper), wp.kernel, D[:1])[1].shape[1]
    lower = np.repeat(wp.lower[None], K, 0) if lower is None else lower
    upper = np.repeat(wp.upper[None], K, 0) if upper is None else upper
    runs = [Run(z0, lo, hi, m, maxiter, 1e-9, max_calls, wp.A) for z0, lo, hi in zip(Z0, lower, upper)]
    while True:
        waiting = [k for k, r in enumerate(runs) if r.pending is not None]
        if not waiting:
            break
        f, df, g, dG = wp.differences(np.stack([runs[k].pending for k in waiting]), np.repeat(wp.kernel, len(waiting), 0),
                                      D[waiting])
        for i, k in enumerate(waiting):
            runs[k].feed(f[i], df[i], -g[i], -dG[i])
    Z = np.array([r.result()[0] for r in runs])
    return (Z, *wp.values(Z, np.repeat(wp.kernel, K, 0), D))


def depth_neighbours(depth: np.ndarray, lo, hi) -> np.ndarray:
    """Depth vectors one block away, in a fixed order: ±1 in one stage, or one block moved between two stages."""
    S = len(depth)
    steps = [s * np.eye(S, dtype=np.int64)[i] for i in range(S) for s in (1, -1)]
    steps += [np.eye(S, dtype=np.int64)[i] - np.eye(S, dtype=np.int64)[j] for i, j in itertools.permutations(range(S), 2)]
    D = np.asarray(depth)[None] + np.array(steps)
    return D[np.all((D >= np.asarray(lo)) & (D <= np.asarray(hi)), axis=1)]


def _choices(v: float, lo: float, hi: float) -> list[int]:
    """Grid indices to try for a real index v: its floor and ceiling, or v ± 1 when v is a grid point."""
    f = np.floor(v + 1e-9)
    c = (f, f + 1) if v - f > 1e-6 else (f - 1, f, f + 1)
    return [int(a) for a in c if lo <= a <= hi]


def round_widths(problem: DeepMADProblem, x: np.ndarray, z: np.ndarray, moves: np.ndarray, top: int = 5,
                 combos: int = 8, window: tuple[int, ...] = (-1, 0, 1, 2), maxiter: int = 30,
                 max_calls: int = 30, exact_btn: bool = True) -> tuple[np.ndarray, float] | None:
    """The best integer design near the width optimum z of ``x``'s depths and kernels, polished.

    The stem and expansion indices are coarse (a step changes a bottleneck by 10–50 %), so each
    floor/ceil choice of them (v − 1, v, v + 1 where z is on the grid) is fixed in turn and the
    channels re-solved by SLSQP on the grid's exact bottleneck widths (``exact_btn``: bilinear in
    the channel multiple's rounding, so integer points score exactly), all choices side by side
    (``solve_widths``). The ``combos`` best feasible choices have their channels rounded over
    ``window`` grid steps around the floor (every combination, one vectorised pass); the ``top``
    best feasible integer vectors (or, failing those, the least violating, repaired by
    ``polish.repair``) are polished by the integer local search over ``moves``. Returns the best
    (x, objective), or None when nothing is feasible.
    """
    wp = WidthProblem(problem, x, exact_btn=exact_btn)
    S, n = wp.S, wp.n
    coarse = [0] + list(range(1 + S, 1 + 2 * S))
    C = np.array(list(itertools.product(*[_choices(z[i], wp.lower[i], wp.upper[i]) for i in coarse])), float)
    K = len(C)
    lower, upper = np.repeat(wp.lower[None], K, 0), np.repeat(wp.upper[None], K, 0)
    lower[:, coarse] = upper[:, coarse] = C
    Z0 = np.repeat(np.clip(z, wp.lower, wp.upper)[None], K, 0)
    Z0[:, coarse] = C
    Z, f, G = solve_widths(wp, Z0, None, maxiter, max_calls, lower, upper)
    f = np.where(np.all(G <= 1e-4, axis=1), f, -np.inf)
    keep = [k for k in np.argsort(-f, kind="stable")[:combos] if np.isfinite(f[k])]
    if not keep:
        return None
    offsets = np.array(list(itertools.product(window, repeat=S)), dtype=np.int64)
    X = np.repeat(wp.x[None], len(keep) * len(offsets), 0)
    for b, k in enumerate(keep):
        rows = slice(b * len(offsets), (b + 1) * len(offsets))
        X[rows, :n] = np.round(Z[k]).astype(np.int64)
        X[rows, 1:1 + S] = np.floor(Z[k, 1:1 + S] + 1e-9).astype(np.int64) + offsets
    xl, xu = problem.space.bounds
    X = np.clip(X, xl, xu)
    if problem.budget.monotone:
        X = problem.space.repair_monotone(X)
    ev, G = problem.evaluate_vectors(X)
    cv = violation(G)
    fo = np.where(cv <= 0, ev.objective, -np.inf).reshape(len(keep), len(offsets))
    # The best feasible rounding of each choice (best choices first): distinct starts, not one basin.
    starts = [X[b * len(offsets) + int(np.argmax(fo[b]))] for b in range(len(keep)) if np.isfinite(fo[b].max())][:top]
    if not starts:
        for k in np.argsort(cv, kind="stable")[:top]:
            r = repair(problem, X[k], moves)
            if r is not None:
                starts.append(r[0])
    if not starts:
        return None
    return max((local_search(problem, s, moves) for s in starts), key=lambda p: p[1])


def _score(wp: WidthProblem, Z0: np.ndarray, D: np.ndarray, seen: dict, maxiter: int, max_calls: int) -> None:
    """Re-balance the widths of depth vectors D (warm-started at Z0's rows), side by side; record (value, z) in
    ``seen`` (value −inf where the solve ends infeasible)."""
    Z, f, G = solve_widths(wp, Z0, D, maxiter, max_calls)
    f = np.where(np.all(G <= 1e-4, axis=1), f, -np.inf)
    for e, fe, ze in zip(D, f, Z):
        seen[tuple(int(t) for t in e)] = (float(fe), ze)


def depth_moves(problem: DeepMADProblem, x: np.ndarray, fx: float, moves: np.ndarray, rounds: int = 5,
                beam: int = 5, keep: int = 2, maxiter: int = 100, max_calls: int = 30, own_calls: int = 300,
                relaxed_depths: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Beam search over depth vectors from ``x`` (and a relaxed optimum's depths), each scored by its
    re-balanced widths; then the best are rounded back to the grid.

    A depth vector is scored by the optimum of its widths (stem, channels, expansions) made
    continuous in grid-index space (``WidthProblem``, SLSQP warm-started at its parent's widths):
    that value ranks depth vectors far better than the integer designs the search happened to
    reach, so the search crosses depth basins the integer neighbourhood cannot leave. The first
    scored are ``x``'s own depths and, given ``relaxed_depths`` (the real depths of the
    relaxation's optimum, ``relax.step.relaxed_depths``), every floor/ceil rounding of them. Each
    of ``rounds`` rounds expands the ``beam`` best depth vectors not yet expanded: every vector one
    block away (one block more or less in a stage, or one block moved between two stages), all
    solved side by side in one lockstep (``solve_widths``). The ``keep`` best depth vectors seen
    are rounded (``round_widths``) and polished by the integer local search over ``moves``.
    Deterministic. Returns the best of ``x`` and the roundings, as (x, objective).
    """
    space = problem.space
    S = space.num_stages
    dcols = slice(1 + 3 * S, 1 + 4 * S)
    lo, hi = np.asarray(space.depth_min), np.asarray(space.depth_max)
    wp = WidthProblem(problem, x)
    z, v = wp.solve(x[: wp.n].astype(float), maxiter, own_calls)
    if not wp.feasible(z):
        z, v = x[: wp.n].astype(float), float(wp.values(x[None, : wp.n].astype(float))[0][0])
    own = tuple(int(t) for t in x[dcols])
    seen = {own: (v, z)}
    if relaxed_depths is not None:
        r = np.clip(np.asarray(relaxed_depths, dtype=float), lo, hi)
        D = np.array(sorted(set(itertools.product(*[sorted({int(np.floor(t)), int(np.ceil(t))}) for t in r])) - {own}))
        if len(D):
            _score(wp, np.repeat(z[None], len(D), 0), D, seen, maxiter, max_calls)
    expanded: set = set()
    for _ in range(rounds):
        ranked = sorted((t for t in seen if t not in expanded and np.isfinite(seen[t][0])),
                        key=lambda t: (-seen[t][0], t))[:beam]
        children: dict = {}
        for t in ranked:
            expanded.add(t)
            for e in depth_neighbours(np.array(t), lo, hi):
                e = tuple(int(a) for a in e)
                if e not in seen and e not in children:
                    children[e] = seen[t][1]
        if not children:
            break
        _score(wp, np.array(list(children.values())), np.array(list(children)), seen, maxiter, max_calls)
    best = (x, fx)
    ranked = sorted((t for t in seen if np.isfinite(seen[t][0])), key=lambda t: (-seen[t][0], t))
    for e in ranked[:keep]:
        y = x.copy()
        y[dcols] = e
        found = round_widths(problem, y, seen[e][1], moves)
        if found is None:  # the grid's exact bottlenecks stalled every SLSQP run: the smooth ones
            found = round_widths(problem, y, seen[e][1], moves, exact_btn=False)
        if found is not None and found[1] > best[1] + 1e-9:
            best = found
    return best[0], float(best[1])
