"""The NSGA-II sweep over a MAC range (an archive of every feasible non-dominated point) and the hypervolume."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ..config import Config
from ..io import atomic_write_text, dumps_json, json_number
from ..objective import DEFAULT_BETA
from ..problem import Budget, DeepMADProblem, MonotoneRepair
from ..search import feasible_samples
from ..space import SearchSpace
from .budgets import Sweep, budget_seed, point_budget

Callback = Callable[[dict], None]

SWEEP_FORMAT = "deepmad-evo/pareto-sweep/1"
SWEEP_LABEL = "sweep"
# Budget levels the sweep's initial population is spread over.
SWEEP_LEVELS = 8


class FrontProblem(Problem):
    """(−objective, MACs[, params]) of a search space under ρ, monotone channels and a MAC range.

    F = (−objective, MACs / MAX[, params / P]); G = the ``DeepMADProblem`` constraints at
    (MAX, P) plus 1 − MACs / MIN;
    ``archive`` = (X, F) of the feasible non-dominated points evaluated so far.
    """

    def __init__(self, space: SearchSpace, budget: Budget, macs_min: float, alpha=None, beta: float = DEFAULT_BETA,
                 convention: str = "torch") -> None:
        if budget.macs is None:
            raise ValueError("budget.macs: a sweep needs a MAC budget")
        self.inner = DeepMADProblem(space, budget, alpha, beta, convention)
        self.space, self.budget, self.macs_min = space, budget, float(macs_min)
        xl, xu = space.bounds
        n_obj = 2 if budget.params is None else 3
        super().__init__(n_var=space.n_var, n_obj=n_obj, n_ieq_constr=len(budget.names) + 1, xl=xl, xu=xu, vtype=int)
        self.archive = (np.zeros((0, space.n_var), dtype=np.int64), np.zeros((0, n_obj)))

    def evaluate_vectors(self, X: np.ndarray):
        """Evaluate integer vectors; returns (PopulationEvaluation, F, G)."""
        ev, G = self.inner.evaluate_vectors(np.asarray(X))
        cols = [-ev.objective, ev.macs / self.budget.macs]
        if self.budget.params is not None:
            cols.append(ev.params / self.budget.params)
        F = np.column_stack(cols).astype(float)
        return ev, F, np.column_stack([G, 1.0 - ev.macs / self.macs_min])

    def _evaluate(self, X, out, *args, **kwargs):
        X = np.round(np.asarray(X)).astype(np.int64)
        _, F, G = self.evaluate_vectors(X)
        out["F"], out["G"] = F, G
        # Every evaluated point passes here, so the archive misses nothing NSGA-II's survival drops.
        ok = np.maximum(G, 0.0).sum(axis=1) <= 0
        self.archive = _non_dominated(np.concatenate([self.archive[0], X[ok]]),
                                      np.concatenate([self.archive[1], F[ok]]))


def _non_dominated(X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-dominated rows, in a canonical order (by F, then X) so the archive is deterministic."""
    if len(X) == 0:
        return X, F
    _, keep = np.unique(F, axis=0, return_index=True)
    X, F = X[np.sort(keep)], F[np.sort(keep)]
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    X, F = X[front], F[front]
    order = np.lexsort(tuple(X.T[::-1]) + tuple(F.T[::-1]))
    return X[order], F[order]


def solve_sweep(cfg: Config, sweep: Sweep, seed: int, path: Path | None, report: Callback | None = None) -> dict:
    """NSGA-II over a MAC range; writes and returns the sweep record (front sorted by MACs).

    Effort: population 2 × ``search.pop_size``, ``search.generations × search.restarts`` generations.

    Args:
        cfg: the run configuration.
        sweep: MAC range and params budget.
        seed: the run seed (the sweep's own seed is ``budget_seed(seed, sweep)``).
        path: where the record goes (atomically); ``None`` writes nothing.
        report: called with ``{"event": "progress", "label": "sweep", "fraction", "best_objective"}``.

    Returns:
        The record (JSON-ready dict).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    space = cfg.search_space()
    o = cfg.objective
    budget = point_budget(cfg, sweep.macs_max, sweep.params_max)
    problem = FrontProblem(space, budget, sweep.macs_min, o.alpha, o.beta, o.convention)
    search_seed = budget_seed(seed, sweep)
    rng = np.random.default_rng(search_seed)
    pop_size = 2 * cfg.search.pop_size
    n_gen = cfg.search.generations * cfg.search.restarts

    # Spread the start over the range: feasible samples hug their budget, so one level per slice.
    levels = np.geomspace(sweep.macs_min, sweep.macs_max, SWEEP_LEVELS)
    per_level = -(-pop_size // SWEEP_LEVELS)
    starts = []
    for m in levels:
        params = None if sweep.params_max is None else sweep.params_max * m / sweep.macs_max
        level = DeepMADProblem(space, point_budget(cfg, m, params), o.alpha, o.beta, o.convention)
        starts.append(feasible_samples(level, per_level, rng))
    X0 = np.concatenate(starts)[:pop_size]  # already channel-monotone where the budget asks for it

    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=Population.new(X=X0),
        crossover=SBX(prob=cfg.search.crossover_prob, eta=cfg.search.crossover_eta, vtype=float,
                      repair=RoundingRepair()),
        mutation=PM(eta=cfg.search.mutation_eta, vtype=float, repair=RoundingRepair()),
        repair=MonotoneRepair(space, budget.monotone),
        eliminate_duplicates=True,
    )
    algorithm.setup(problem, termination=("n_gen", n_gen), seed=int(rng.integers(2**31 - 1)), verbose=False)
    gen = 0
    while algorithm.has_next():
        algorithm.next()
        gen += 1
        if report is not None and (gen == n_gen or gen % max(1, n_gen // 100) == 0):
            F = problem.archive[1]
            best = float(-F[:, 0].min()) if len(F) else None
            report({"event": "progress", "label": SWEEP_LABEL, "fraction": gen / n_gen, "best_objective": best})

    arch_X = problem.archive[0]
    n_evals = problem.inner.n_evals
    front = []
    if len(arch_X):
        ev, _, _ = problem.evaluate_vectors(arch_X)
        order = np.lexsort((-ev.objective, ev.macs))
        for i in order:
            front.append({"text": space.genotype(arch_X[i]).to_text(), "objective": float(ev.objective[i]),
                          "macs": json_number(ev.macs[i]), "params": json_number(ev.params[i]), "rho": float(ev.rho[i]),
                          "layers": int(ev.layers[i])})
    record = {"format": SWEEP_FORMAT, "config": cfg.to_dict(), "seed": seed, "search_seed": search_seed,
              "sweep": {"macs_min": sweep.macs_min, "macs_max": sweep.macs_max, "params_max": sweep.params_max},
              "pop_size": pop_size, "generations": n_gen, "evaluations": n_evals,
              "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0, "front": front}
    if path is not None:
        atomic_write_text(path, dumps_json(record, indent=1) + "\n")
    return record


def front_best(front: Sequence[dict], macs: float, params: float | None = None) -> dict | None:
    """The front point with the highest objective within a budget (``None`` if none fits)."""
    fits = [p for p in front if p["macs"] <= macs and (params is None or p["params"] <= params)]
    return max(fits, key=lambda p: p["objective"]) if fits else None


def hypervolume(objective, macs, params=None, *, macs_ref: float, params_ref: float | None = None) -> float:
    """Hypervolume of (−objective, MACs/macs_ref[, params/params_ref]) w.r.t. the point (0, 1[, 1]).

    Args:
        objective, macs, params: the points (params omitted for the two-objective form).
        macs_ref, params_ref: the normalising budgets (see the module docstring).

    Returns:
        The hypervolume, in objective units (0 for no points).
    """
    objective = np.asarray(objective, dtype=float)
    if objective.size == 0:
        return 0.0
    cols = [-objective, np.asarray(macs, dtype=float) / macs_ref]
    ref = [0.0, 1.0]
    if params is not None:
        cols.append(np.asarray(params, dtype=float) / params_ref)
        ref.append(1.0)
    return float(HV(ref_point=np.array(ref))(np.column_stack(cols)))
