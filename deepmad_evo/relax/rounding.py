"""Back from the relaxation to the grid: round a relaxed point, repair it to feasibility, polish it."""

from __future__ import annotations

import numpy as np

from ..problem import DeepMADProblem
from ..polish import local_search, neighbourhood, repair
from .relaxation import Relaxation


def objective_of(problem: DeepMADProblem, x: np.ndarray) -> float:
    """The objective of one genotype vector under the problem's weights and convention."""
    return float(problem.evaluate_vectors(x[None])[0].objective[0])


def round_and_polish(problem: DeepMADProblem, sources, polish_iterations: int, polish_starts: int, seed: int,
                     samples: int = 100_000, max_free: int = 14):
    """Round every (relaxation, point) source, polish the best few roundings; (x, repaired objective) or (None, nan).

    ``samples`` and ``max_free`` as for ``round_and_repair``.
    """
    candidates = sorted((c for i, (rel, z) in enumerate(sources)
                         for c in round_and_repair(problem, rel, z, max_free=max_free, samples=samples,
                                                   seed=seed + i)), key=lambda c: -c[1])
    if not candidates:
        return None, float("nan")
    x = candidates[0][0]
    if polish_iterations:
        moves = neighbourhood(problem.space.n_var)
        polished = [local_search(problem, xc, moves, max_iter=polish_iterations)
                    for xc, _ in candidates[:polish_starts]]
        x = max(polished, key=lambda p: p[1])[0]
    return x, candidates[0][1]


def round_and_repair(problem: DeepMADProblem, relax: Relaxation, z: np.ndarray, max_free: int = 14,
                     top: int = 3, samples: int = 100_000, seed: int = 0) -> list[tuple[np.ndarray, float]]:
    """Round a relaxed point to the space's grid and repair it to feasibility.

    Every variable has a floor and a ceiling on its grid (stem and stage channels, expansion
    btn/c, depth; kernels are the relaxation's). All 2^f floor/ceil combinations of the ``f``
    most fractional variables (at most ``max_free``; the others take the nearest value) are
    scored in one vectorised pass, with ``samples`` randomised roundings (each depth rounded up
    with probability its fractional part, channels within ±4 grid steps, expansions ±2, stem ±1
    of the nearest value; seeded by ``seed``). When none is feasible (several budgets are active
    at the relaxed optimum, so a one-step rounding rarely meets all of them), the least violating
    ones are repaired by a descent on the total violation over single-step moves.

    Returns:
        The ``top`` best feasible (genotype vector, objective) pairs, best first (may be empty).
    """
    space = problem.space
    S = space.num_stages
    w = relax.widths(z)
    grids = ([space.stem_channels] + [space.channels] * S + [space.expansions] * S
             + [range(lo, hi + 1) for lo, hi in zip(space.depth_min, space.depth_max)])
    values = [w["stem"], *w["out"], *w["expansion"], *w["depth"]]
    pairs, frac = [], []
    for grid, v in zip(grids, values):
        g = np.asarray(grid, dtype=float)
        i = int(np.clip(np.searchsorted(g, v), 1, len(g) - 1)) if len(g) > 1 else 0
        lo, hi = (i - 1, i) if len(g) > 1 and g[i - 1] <= v <= g[i] else ((0, 0) if v < g[0] else (len(g) - 1,) * 2)
        if lo != hi and (np.isclose(v, g[lo]) or np.isclose(v, g[hi])):
            lo = hi = lo if np.isclose(v, g[lo]) else hi
        t = 0.0 if lo == hi else (v - g[lo]) / (g[hi] - g[lo])
        pairs.append((lo, hi))
        frac.append(min(t, 1 - t))
    order = [i for i in np.argsort(frac, kind="stable")[::-1] if frac[i] > 0][:max_free]
    nearest = np.array([lo if (lo == hi or (values[i] - grids[i][lo]) <= (grids[i][hi] - values[i])) else hi
                        for i, (lo, hi) in enumerate(pairs)])
    base = np.insert(nearest, 1 + 2 * S, [space.kernels.index(k) for k in relax.kernels])
    base[1 + 3 * S:] += np.asarray(space.depth_min)  # depth indices -> depths
    cols = [i if i < 1 + 2 * S else i + S for i in order]  # variable -> genotype-vector column
    X = np.repeat(base[None], 2 ** len(order), axis=0)
    bits = (np.arange(2 ** len(order))[:, None] >> np.arange(len(order))) & 1
    for b, i, c in zip(bits.T, order, cols):
        lo, hi = pairs[i]
        offset = space.depth_min[i - 1 - 2 * S] if i >= 1 + 2 * S else 0
        X[:, c] = np.where(b == 1, hi, lo) + offset
    if samples:
        rng = np.random.default_rng(seed)
        Y = np.repeat(base[None], samples, axis=0)
        Y[:, 0] += rng.integers(-1, 2, samples)
        Y[:, 1:1 + S] += rng.integers(-4, 5, (samples, S))
        Y[:, 1 + S:1 + 2 * S] += rng.integers(-2, 3, (samples, S))
        d = np.asarray(w["depth"])
        up = rng.random((samples, S)) < d - np.floor(d)
        Y[:, 1 + 3 * S:] = np.floor(d).astype(np.int64) + up
        xl, xu = space.bounds
        X = np.concatenate([X, np.clip(Y, xl, xu)])
    if problem.budget.monotone:
        X = space.repair_monotone(X)
    X = np.unique(X, axis=0)
    ev, G = problem.evaluate_vectors(X)
    cv = np.maximum(G, 0).sum(axis=1)
    found = [(X[k], float(ev.objective[k])) for k in np.flatnonzero(cv <= 0)]
    # With several budgets active at once a one-step rounding rarely meets all of them: walk
    # the least violating roundings downhill in violation until they are feasible.
    moves = neighbourhood(space.n_var, singles=(1,), pairs=(1,))
    for k in np.argsort(cv, kind="stable")[: 0 if found else top]:
        x = repair(problem, X[k], moves)
        if x is not None:
            found.append(x)
    found.sort(key=lambda c: -c[1])
    unique = {tuple(x): (x, f) for x, f in reversed(found)}
    return sorted(unique.values(), key=lambda c: -c[1])[:top]
