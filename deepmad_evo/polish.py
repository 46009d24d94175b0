"""Integer local search over genotype vectors: the move set and a vectorised best-improvement descent.

Shared by the search (polishing GA solutions and perturbed points) and the relaxation (polishing
roundings), so neither imports the other for it.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .problem import DeepMADProblem


def violation(G: np.ndarray) -> np.ndarray:
    """Total constraint violation of each row of G (0 when feasible)."""
    return np.maximum(G, 0.0).sum(axis=1)


def neighbourhood(n_var: int, singles=(1, 2, 4, 8), pairs=(1, 2), transfers=(), depth_cols=(),
                  width_cols=()) -> np.ndarray:
    """Move matrix: every single-variable step ±s and every two-variable trade (±a, ±b).

    With ``transfers`` (step sizes) also every *depth transfer with a width step*: one block moves
    from stage j to stage i (``depth_cols``) while one width variable (``width_cols``) moves by
    ±t. A depth move alone usually breaks ρ or a size budget that is active at a local optimum;
    with one compensating width step it can stay feasible, which no one- or two-variable move does.

    Built once per distinct argument set (20-30 ms each; chains, final tasks and the branch and
    bound's roundings ask for the same few) and returned read-only.
    """
    return _neighbourhood(int(n_var), tuple(singles), tuple(pairs), tuple(transfers), tuple(depth_cols),
                          tuple(width_cols))


@functools.lru_cache(maxsize=32)
def _neighbourhood(n_var, singles, pairs, transfers, depth_cols, width_cols) -> np.ndarray:
    moves = []
    eye = np.eye(n_var, dtype=np.int64)
    for i in range(n_var):
        for s in singles:
            moves += [s * eye[i], -s * eye[i]]
    for i, j in itertools.combinations(range(n_var), 2):
        for a, b in itertools.product(pairs, pairs):
            for si, sj in itertools.product((1, -1), (1, -1)):
                moves.append(si * a * eye[i] + sj * b * eye[j])
    for i, j in itertools.permutations(depth_cols, 2):
        for k in width_cols:
            for t in transfers:
                moves += [eye[i] - eye[j] + t * eye[k], eye[i] - eye[j] - t * eye[k]]
    moves = np.array(moves, dtype=np.int64)
    moves.flags.writeable = False
    return moves


def local_search(problem: DeepMADProblem, x: np.ndarray, moves: np.ndarray, max_iter: int = 500):
    """Best-improvement integer local search from a feasible ``x``; returns (x, objective)."""
    space = problem.space
    xl, xu = space.bounds
    ev, G = problem.evaluate_vectors(x[None])
    best = ev.objective[0] if violation(G)[0] <= 0 else -np.inf
    for _ in range(max_iter):
        N = np.clip(x + moves, xl, xu)
        if problem.budget.monotone:
            N = space.repair_monotone(N)
        ev, G = problem.evaluate_vectors(N)
        f = np.where(violation(G) <= 0, ev.objective, -np.inf)
        k = int(np.argmax(f))
        if not f[k] > best + 1e-9:
            break
        x, best = N[k], f[k]
    return x, best


def repair(problem: DeepMADProblem, x: np.ndarray, moves: np.ndarray, max_iter: int = 60):
    """Least-violation descent over ``moves`` (kernels kept) until feasible; (x, objective) or None when stuck."""
    space = problem.space
    xl, xu = space.bounds
    kcols = slice(1 + 2 * space.num_stages, 1 + 3 * space.num_stages)
    moves = moves[np.all(moves[:, kcols] == 0, axis=1)]  # kernels stay (the relaxation's, the re-balance's)
    _, G = problem.evaluate_vectors(x[None])
    current = float(np.maximum(G, 0).sum())
    for _ in range(max_iter):
        N = np.clip(x + moves, xl, xu)
        if problem.budget.monotone:
            N = space.repair_monotone(N)
        ev, G = problem.evaluate_vectors(N)
        cv = np.maximum(G, 0).sum(axis=1)
        if np.any(cv <= 0):
            k = int(np.argmax(np.where(cv <= 0, ev.objective, -np.inf)))
            return N[k], float(ev.objective[k])
        k = int(np.argmin(cv))
        if not cv[k] < current:
            return None
        x, current = N[k], float(cv[k])
    return None
