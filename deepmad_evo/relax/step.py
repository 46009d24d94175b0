"""The relaxation as a search stage: relax a design, dive to integral depths, round back, polish."""

from __future__ import annotations

import numpy as np

from ..problem import DeepMADProblem
from ..polish import local_search
from .depth_bound import depth_dive
from .relaxation import FEASIBILITY_TOLERANCE, Relaxation
from .rounding import round_and_repair


def relaxation_step(problem: DeepMADProblem, x: np.ndarray, moves: np.ndarray, max_evaluations: int = 150,
                    samples: int = 20_000, polish_starts: int = 2, seed: int = 0) -> tuple[np.ndarray, float] | None:
    """A search stage: relax ``x``'s problem (its kernels fixed), dive to integral depths, round, polish.

    SLSQP from ``x``'s widths and depths gives the relaxed optimum; ``depth_dive`` fixes its depths
    one at a time (following the better child) and re-solves the widths at each level, so the
    leaf is the relaxed width optimum at integral depths — width rebalancing for a depth move
    that single-variable steps cannot make. Its rounding is repaired, polished by the search's
    integer local search (``moves``) and returned as (x, objective), or None when no step of this
    ends feasible. Deterministic for a given ``seed``.
    """
    space = problem.space
    kernels = space.decode(x[None])[3][0]
    relax = Relaxation(space, problem.budget, kernels, problem.alpha, problem.beta, problem.convention)
    z, _ = relax.solve(relax.point(space.genotype(x)), max_evaluations=4 * max_evaluations)
    if relax.violation(z)[0] > FEASIBILITY_TOLERANCE:
        return None
    leaf = depth_dive(relax, z, max_evaluations)
    if leaf is None:
        return None
    candidates = round_and_repair(problem, relax, leaf, top=polish_starts, samples=samples, seed=seed)
    if not candidates:
        return None
    return max((local_search(problem, xc, moves) for xc, _ in candidates), key=lambda p: p[1])


def relaxed_depths(problem: DeepMADProblem, x: np.ndarray, max_evaluations: int = 600) -> np.ndarray | None:
    """The real depths of the relaxed optimum from ``x`` (its kernels fixed), or None when SLSQP ends infeasible.

    Where the integer search is stuck in a depth basin, the relaxation (widths and depths real)
    usually lands near the better basin: a start for the depth climb of ``rebalance.depth_moves``.
    """
    space = problem.space
    relax = Relaxation(space, problem.budget, space.decode(x[None])[3][0], problem.alpha, problem.beta,
                       problem.convention)
    z, _ = relax.solve(relax.point(space.genotype(x)), max_evaluations=max_evaluations)
    if relax.violation(z)[0] > FEASIBILITY_TOLERANCE:
        return None
    return np.asarray(relax.widths(z)["depth"], dtype=float)
