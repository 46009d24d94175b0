"""Constrained search over genotype vectors: pymoo GA chains with an integer local search.

Each of several independent chains runs a GA (the steps of ``pymoo.algorithms.soo.nonconvex.ga.GA``
on plain integer arrays: pymoo's SBX + polynomial mutation with rounding, a monotone-channel
repair, duplicate elimination, feasibility-first selection) from a feasible initial population,
restarted with derived seeds.
The chain's best distinct solutions are polished by a best-improvement local search whose
neighbourhood (single-variable steps of several sizes and all two-variable trades) is evaluated
in one vectorised pass, then by iterated perturbation + local search from the incumbent. The
landscape is rugged (kernel choice and depths create basins), so the best of several chains is
far more repeatable than one long chain; chains run on separate cores.

Everything is driven by one ``np.random.Generator`` / derived seeds, and stopping is by counts,
never by wall time, so the same seed gives the same result on every machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from pymoo.core.population import Population
from pymoo.core.callback import Callback as PymooCallback
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM

from .genotype import Genotype
from .objective import DEFAULT_BETA, Evaluation, evaluate
from .parallel import run_tasks
from .polish import local_search, neighbourhood
from .polish import violation as _violation
from .problem import Budget, DeepMADProblem
from .rebalance import depth_moves
from .space import SearchSpace

Callback = Callable[[dict], None]


class InfeasibleBudgetError(ValueError):
    """No genotype of the space satisfies the budgets."""


@dataclass(frozen=True)
class SearchSettings:
    """Effort and operators of a search: the ``[search]`` table of a preset, read into this dataclass.

    Counts only (no wall-clock limits), so the same settings and seed give the same result.
    """

    pop_size: int = 100
    generations: int = 60
    restarts: int = 2
    local_search: bool = True
    polish_top: int = 6  # best distinct GA results polished per chain
    perturbations: int = 25
    chains: int = 6
    finish: int = 25  # perturbations from the best of all chains at the end (0 = none)
    relax: int = 2  # relaxation steps (dive to integral depths, round, polish) from this many chain winners
    relax_evaluations: int = 40  # SLSQP evaluations per node of a relaxation step's dive
    pair_steps: tuple[int, ...] = (1, 2)  # step sizes of the two-variable trades in the local search
    transfer_steps: tuple[int, ...] = ()  # width steps of the depth-transfer moves of the last polishes (() = none)
    depth_moves: int = 0  # rounds of the depth search with re-balanced widths (``rebalance.depth_moves``; 0 = none)
    crossover_prob: float = 0.9  # SBX crossover probability
    crossover_eta: float = 15.0  # SBX distribution index
    mutation_eta: float = 20.0  # polynomial-mutation distribution index
    seed: int = 0  # the run seed (``run_search`` takes it as an argument; the config records it here)
    jobs: int = 0  # worker processes; 0 = min(chains, CPU count). Never changes the result.


@dataclass(frozen=True)
class SearchResult:
    """What a search returns: the best genotype, its evaluation and the run's record."""

    genotype: Genotype
    x: np.ndarray
    objective: float
    evaluation: Evaluation
    feasible: bool
    history: tuple[dict, ...]
    n_evals: int
    seconds: float
    seed: int
    convention: str
    budget: Budget = field(repr=False)


def smallest_network(space: SearchSpace) -> np.ndarray:
    """The genotype vector with every searched number at its minimum (cheapest network)."""
    xl, _ = space.bounds
    return xl.copy()


def _budget_violation(problem: DeepMADProblem, G: np.ndarray) -> np.ndarray:
    """Violation of the size budgets only (MACs, params, layers, latency): these grow with every variable."""
    cols = [i for i, n in enumerate(problem.budget.names) if n in ("macs", "params", "max_layers", "latency")]
    return _violation(G[:, cols]) if cols else np.zeros(len(G))


def feasible_samples(problem: DeepMADProblem, n: int, rng: np.random.Generator, steps: int = 14,
                     rounds: int = 20) -> np.ndarray:
    """``n`` vectors near the budget boundary, feasible wherever the sampler finds such.

    Each random vector is shrunk towards the space's lower corner by the largest factor λ ∈ [0, 1]
    that keeps it within the size budgets (bisection, vectorised over the batch; kernels keep
    their drawn values). ρ is not monotone along that ray, so shrunk vectors that break ρ ≤ ρ0
    are redrawn, for up to ``rounds`` rounds; the least-violating ones fill any remainder.
    """
    space = problem.space
    xl, _ = space.bounds
    S = space.num_stages
    kcols = slice(1 + 2 * S, 1 + 3 * S)
    kept, spare = [], []
    for _ in range(rounds):
        m = max(n, 64)
        X = space.sample(m, rng)

        def shrunk(lam, X=X):
            Xs = xl + np.floor(lam[:, None] * (X - xl)).astype(np.int64)
            Xs[:, kcols] = X[:, kcols]
            return space.repair_monotone(Xs) if problem.budget.monotone else Xs

        lo, hi = np.zeros(m), np.ones(m)
        for _ in range(steps):
            lam = (lo + hi) / 2
            ok = _budget_violation(problem, problem.evaluate_vectors(shrunk(lam))[1]) <= 0
            lo, hi = np.where(ok, lam, lo), np.where(ok, hi, lam)
        Xs = shrunk(lo)
        cv = _violation(problem.evaluate_vectors(Xs)[1])
        kept.append(Xs[cv <= 0])
        spare.append((cv[cv > 0], Xs[cv > 0]))
        if sum(len(k) for k in kept) >= n:
            break
    X = np.concatenate(kept)[:n]
    if len(X) < n:
        cv = np.concatenate([c for c, _ in spare])
        Y = np.concatenate([y for _, y in spare])
        X = np.concatenate([X, Y[np.argsort(cv, kind="stable")[: n - len(X)]]])
    return X


class FeasibleSampling(Sampling):
    """``feasible_samples`` as a pymoo ``Sampling``: start any pymoo algorithm near the budget boundary.

    The sampler reads the space and budgets from the ``DeepMADProblem`` it is given here, so it
    also works when the algorithm sees a wrapped problem; randomness is the algorithm's
    ``random_state``.
    """

    def __init__(self, problem: DeepMADProblem) -> None:
        super().__init__()
        self.problem = problem

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return feasible_samples(self.problem, n_samples, random_state)


class GenerationState:
    """What a pymoo ``Callback`` handed to ``run_search`` sees after each GA generation.

    The GA loop works on plain arrays (pymoo's ``Population`` of ``Individual`` objects cost ~99 % of
    a generation's time at these sizes); this view gives a callback the attributes it reads on a
    pymoo algorithm: ``problem``, ``n_gen``, and ``pop`` / ``opt`` as pymoo ``Population`` objects
    (built on first access only).
    """

    def __init__(self, problem, n_gen: int, X: np.ndarray, F: np.ndarray, G: np.ndarray, CV: np.ndarray) -> None:
        self.problem, self.n_gen = problem, n_gen
        self._arrays = (X, F, G, CV)

    @property
    def pop(self) -> Population:
        X, F, G, CV = self._arrays
        return Population.new(X=X, F=F[:, None], G=G, CV=CV[:, None], feas=(CV <= 0)[:, None])

    @property
    def opt(self) -> Population:
        return self.pop[:1]  # the population is kept sorted: feasible first, then by objective


def _unique_new(X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The rows of Q that are neither in X nor repeated earlier in Q (first occurrence kept, order kept)."""
    both = np.concatenate([X, Q])
    _, first = np.unique(both, axis=0, return_index=True)
    keep = np.sort(first[first >= len(X)]) - len(X)
    return Q[keep]


def _ga(problem: DeepMADProblem, X0: np.ndarray, settings: SearchSettings, seed: int, on_generation,
        algorithm_callback: PymooCallback | None = None) -> np.ndarray:
    """A generational GA on integer arrays with pymoo's operators; returns the final population, best first.

    The steps are pymoo's ``GA`` (``pymoo.algorithms.soo.nonconvex.ga``): binary tournaments by
    feasibility then objective (ties by a coin), SBX crossover with probability
    ``crossover_prob`` and polynomial mutation (pymoo's ``SBX``/``PM`` applied to the arrays, each
    followed by rounding), the monotone-channel repair, elimination of duplicates (within the
    offspring and against the population), and (μ + λ) survival sorted by constraint violation,
    then objective. ``generations`` counts the initial population as the first, as pymoo's
    ``("n_gen", G)`` does. Vectorised over the population, it runs ~50× faster than the
    ``Individual``-object loop at a population of 100.
    """
    rng = np.random.default_rng(seed)
    n, n_var = settings.pop_size, problem.n_var
    xl, xu = problem.xl, problem.xu
    sbx = SBX(eta=settings.crossover_eta)
    pm = PM(eta=settings.mutation_eta)
    monotone = problem.budget.monotone

    def repair(Q):
        Q = np.clip(np.round(Q), xl, xu).astype(np.int64)
        return problem.space.repair_monotone(Q) if monotone else Q

    def evaluate(X):
        ev, G = problem.evaluate_vectors(X)
        return -ev.objective, G, _violation(G)

    def survive(X, F, G, CV):
        order = np.lexsort((F, CV))[:n]
        return X[order], F[order], G[order], CV[order]

    X = repair(X0)
    X = X[np.sort(np.unique(X, axis=0, return_index=True)[1])]
    X, F, G, CV = survive(X, *evaluate(X))

    def generation_done(g):
        on_generation(X, F, CV)
        if algorithm_callback is not None:
            algorithm_callback(GenerationState(problem, g + 1, X, F, G, CV))

    generation_done(0)
    n_mat = (n + 1) // 2
    for g in range(1, settings.generations):
        Q = np.empty((0, n_var), dtype=np.int64)
        for _ in range(10):  # top up when duplicates were removed, as pymoo's mating does
            a, b = rng.integers(len(X), size=(2, 2 * n_mat))
            infeasible = (CV[a] > 0) | (CV[b] > 0)
            ka = np.where(infeasible, CV[a], F[a])
            kb = np.where(infeasible, CV[b], F[b])
            coin = rng.random(2 * n_mat) < 0.5
            win = np.where(ka < kb, a, np.where(kb < ka, b, np.where(coin, a, b)))
            parents = X[win].reshape(n_mat, 2, n_var).transpose(1, 0, 2).astype(float)
            children = parents.copy()
            cross = rng.random(n_mat) < settings.crossover_prob
            if cross.any():
                children[:, cross] = sbx._do(problem, parents[:, cross], random_state=rng)
            children = np.round(children.reshape(-1, n_var))
            mutate = rng.random(len(children)) <= 0.9  # pymoo PM's default per-individual probability
            if mutate.any():
                children[mutate] = pm._do(problem, children[mutate], random_state=rng)
            Q = np.concatenate([Q, _unique_new(np.concatenate([X, Q]), repair(children))])[:n]
            if len(Q) >= n:
                break
        if len(Q):
            FQ, GQ, CVQ = evaluate(Q)
            X, F, G, CV = survive(np.concatenate([X, Q]), np.concatenate([F, FQ]), np.concatenate([G, GQ]),
                                  np.concatenate([CV, CVQ]))
        generation_done(g)
    return X


def run_search(space: SearchSpace, budget: Budget, *, alpha=None, beta: float = DEFAULT_BETA,
               convention: str = "torch", settings: SearchSettings = SearchSettings(), seed: int = 0,
               callback: Callback | None = None, algorithm_callback: PymooCallback | None = None) -> SearchResult:
    """Maximise the DeepMAD objective over ``space`` under ``budget``.

    The search runs ``settings.chains`` independent chains (GA restarts, local search, iterated
    perturbation), each seeded from ``seed`` alone, on up to ``settings.jobs`` processes, and
    keeps the best; the result does not depend on the number of processes.

    Args:
        space: the search space (template + admissible values).
        budget: ρ0, MAC / parameter / layer budgets and the monotone-channel switch.
        alpha, beta, convention: objective weights and the cost convention.
        settings: search effort.
        seed: the only source of randomness.
        callback: called in this process with a progress dict after each generation / polishing
            step of any chain (keys: phase, chain, step, total, best_objective, feasible_fraction).
        algorithm_callback: a pymoo ``Callback`` handed to every chain's GA (called after each
            generation with a ``GenerationState``: ``problem``, ``n_gen``, ``pop``, ``opt``).
            Chains on worker processes get a copy: use ``settings.jobs = 1`` to read its state
            afterwards.

    Returns:
        A ``SearchResult`` whose genotype satisfies every constraint.

    Raises:
        InfeasibleBudgetError: when the budgets cannot be met.
    """
    t0 = time.perf_counter()
    problem = DeepMADProblem(space, budget, alpha, beta, convention)
    _check_feasible(problem, feasible_samples(problem, 64, np.random.default_rng(seed)))
    chain_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(settings.chains)]
    jobs = settings.jobs or min(settings.chains, os.cpu_count() or 1)
    report = callback or (lambda info: None)
    args = (space, budget, alpha, beta, convention, settings, algorithm_callback)
    outcomes = run_tasks(_chain, [(*args, s, c) for c, s in enumerate(chain_seeds)], jobs=jobs, emit=report,
                         preload=["deepmad_evo.search"])
    # Best objective wins; ties go to the lowest chain index, so the choice is deterministic.
    best = max(range(len(outcomes)), key=lambda c: (outcomes[c][1], -c))
    best_x, best_f = outcomes[best][0], outcomes[best][1]
    history = [h for o in outcomes for h in o[2]]
    n_evals = sum(o[3] for o in outcomes)
    if settings.local_search and (settings.relax or settings.finish):
        n_tail = _tail_tasks(settings)
        starts = _relaxation_starts(problem, outcomes, n_tail)
        tail_seeds = [int(np.random.SeedSequence([seed, settings.chains, t]).generate_state(1)[0]) for t in range(n_tail)]
        tail = [(*args, best_x, best_f, starts[t::n_tail],
                 seed % 2**31 + t, t, n_tail, tail_seeds[t]) for t in range(n_tail)]
        finished = run_tasks(_tail, tail, jobs=min(jobs, n_tail), emit=report, preload=["deepmad_evo.search"])
        # Best objective wins; ties go to the lowest task index (deterministic for any jobs).
        for x, f, h, n in finished:
            history += h
            n_evals += n
            if f > best_f:
                best_x, best_f = x, f
    if settings.local_search and settings.transfer_steps:
        best_x, best_f = local_search(problem, best_x, _moves(space, settings))
    history = tuple(history)
    genotype = space.genotype(best_x)
    evaluation = evaluate(genotype, problem.alpha, beta, convention)
    _, G = problem.evaluate_vectors(best_x[None])
    return SearchResult(genotype, best_x, float(evaluation.objective), evaluation, bool(_violation(G)[0] <= 0),
                        history, n_evals, time.perf_counter() - t0, seed, convention, budget)


def _relaxation_starts(problem, outcomes, n: int) -> list:
    """The ``n`` best distinct chain results (best first, ties by chain index): where the final tasks'
    relaxation steps and depth moves start.

    Neither the relaxation nor the width re-balance has a latency model: with a latency budget
    their optima ignore the binding constraint, so no step starts (their progress events still come).
    """
    seen, starts = set(), []
    candidates = [] if problem.budget.latency is not None else range(len(outcomes))
    for c in sorted(candidates, key=lambda c: (-outcomes[c][1], c)):
        x = outcomes[c][0]
        if np.isfinite(outcomes[c][1]) and tuple(x) not in seen:
            seen.add(tuple(x))
            starts.append(x)
    return starts[:n]


def _tail_tasks(settings: SearchSettings) -> int:
    """How many parallel tasks the end of a search runs: one per relaxation step, at least two when finishing.

    A fixed number (never the number of processes), so the result does not depend on ``jobs``.
    """
    return max(settings.relax, min(2, settings.finish), _depth_move_tasks(settings))


def _depth_move_tasks(settings: SearchSettings) -> int:
    """Final tasks that run depth moves: two (from the two best distinct chain results) when enabled."""
    return 2 if settings.depth_moves and settings.local_search else 0


def polish_events(settings: SearchSettings) -> int:
    """How many "polish" progress events a search with these settings emits (for a progress bar's total)."""
    if not settings.local_search:
        return 0
    return settings.chains * settings.perturbations + settings.relax + settings.finish + _depth_move_tasks(settings)


def _tail(space, budget, alpha, beta, convention, settings, algorithm_callback, best_x, best_f, starts, relax_seed,
          task, n_tasks, finish_seed, emit):
    """One task of a search's end: depth moves and a relaxation step from ``starts`` (the task's share
    of the best distinct chain results, if any), then a share of the finish.

    The relaxation step (``relax.relaxation_step``) re-balances depths and widths together for
    fixed kernels, a move the integer neighbourhood reaches only through lucky kicks. The finish
    is iterated perturbation from the better of the chains' best and the step's result: chains
    end in nearby basins that differ in how depth is split between stages, and a last kick from
    the winner often joins them. Task ``task`` of ``n_tasks`` does ``finish // n_tasks``
    perturbations (the first ``finish % n_tasks`` tasks one more). Returns (x, objective, history,
    evaluations).
    """
    from .relax.step import relaxation_step, relaxed_depths  # relax imports this module's SearchResult

    problem = DeepMADProblem(space, budget, alpha, beta, convention)
    moves = _moves(space, settings, transfers=False)
    history: list[dict] = []
    log = _logger(history, emit, settings.chains)

    if task < _depth_move_tasks(settings):  # one progress event per task, also without a start
        for x in starts:
            f0 = float(problem.evaluate_vectors(x[None])[0].objective[0])
            x, f = depth_moves(problem, x, f0, _moves(space, settings), rounds=settings.depth_moves,
                               relaxed_depths=relaxed_depths(problem, x))
            if f > best_f:
                best_x, best_f = x, f
        log({"phase": "polish", "step": task, "total": _depth_move_tasks(settings), "best_objective": float(best_f),
             "feasible_fraction": 1.0, "n_evals": problem.n_evals})

    if task < settings.relax:  # one progress event per step, also when chains agree
        found = None if not starts else relaxation_step(problem, starts[0], moves, settings.relax_evaluations,
                                                        seed=relax_seed)
        if found is not None and found[1] > best_f:
            best_x, best_f = found
        log({"phase": "polish", "step": task, "total": settings.relax, "best_objective": float(best_f),
             "feasible_fraction": 1.0, "n_evals": problem.n_evals})
    share = settings.finish // n_tasks + (task < settings.finish % n_tasks)
    if share:
        best_x, best_f = _perturb_and_polish(problem, best_x, best_f, moves, replace(settings, perturbations=share),
                                             np.random.default_rng(finish_seed), log)
    return best_x, float(best_f), history, problem.n_evals


def _logger(history: list, emit, chain: int):
    """A task's progress log: tag each event with the chain (the final tasks use ``chains``), keep it, emit it."""
    def log(info):
        info["chain"] = chain
        history.append(info)
        emit(info)
    return log


def _chain(space, budget, alpha, beta, convention, settings, algorithm_callback, seed, chain, emit):
    """One independent chain: GA restarts, local search of the best, iterated perturbation."""
    problem = DeepMADProblem(space, budget, alpha, beta, convention)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    total = settings.restarts * settings.generations
    pool = []
    log = _logger(history, emit, chain)

    for r in range(settings.restarts):
        X0 = feasible_samples(problem, settings.pop_size, rng)
        sub_seed = int(rng.integers(2**31 - 1))
        generation = iter(range(settings.generations + 1))

        def on_generation(X, F, CV, r=r, generation=generation):
            feas = CV <= 0
            best = float(-F[feas].min()) if feas.any() else float("nan")
            g = min(next(generation), settings.generations - 1)
            prev = [h["best_objective"] for h in history[-1:]]
            log({"phase": "ga", "restart": r, "generation": g, "step": r * settings.generations + g,
                 "total": total, "best_objective": max([best] + prev), "feasible_fraction": float(feas.mean()),
                 "n_evals": problem.n_evals})

        pool.append(_ga(problem, X0, settings, sub_seed, on_generation, algorithm_callback))

    X = np.unique(np.concatenate(pool), axis=0)
    ev, G = problem.evaluate_vectors(X)
    f = np.where(_violation(G) <= 0, ev.objective, -np.inf)
    order = np.argsort(-f, kind="stable")
    best_x, best_f = X[order[0]], f[order[0]]
    if settings.local_search:
        moves = _moves(space, settings, transfers=False)
        for i in order[: settings.polish_top]:
            if not np.isfinite(f[i]):
                continue
            x, fx = local_search(problem, X[i], moves)
            if fx > best_f:
                best_x, best_f = x, fx
        best_x, best_f = _perturb_and_polish(problem, best_x, best_f, moves, settings, rng, log)
    return best_x, float(best_f), history, problem.n_evals


def _moves(space: SearchSpace, settings: SearchSettings, transfers: bool = True) -> np.ndarray:
    """The local search's move matrix (``polish.neighbourhood``); ``transfers``: with the depth transfers
    of ``settings.transfer_steps`` (for the depth moves' polish and the search's last polish)."""
    S = space.num_stages
    return neighbourhood(space.n_var, pairs=settings.pair_steps, transfers=settings.transfer_steps if transfers else (),
                         depth_cols=range(1 + 3 * S, 1 + 4 * S), width_cols=range(1 + 2 * S))


def _perturb_and_polish(problem, x, fx, moves, settings, rng, log):
    """Iterated local search: perturb a few variables, restore feasibility, polish, keep if better."""
    space = problem.space
    xl, xu = space.bounds
    span = xu - xl
    for step in range(settings.perturbations):
        y = x.copy()
        idx = rng.choice(space.n_var, size=3, replace=False)
        # Kick by ~10 % of each range, but by at least one step, so short ranges (kernel, a
        # first-stage depth of 1..3) move too.
        kick = np.maximum(1, np.round(np.abs(rng.normal(0, 0.1, 3)) * span[idx])).astype(np.int64)
        y[idx] = np.clip(y[idx] + rng.choice([-1, 1], 3) * kick, xl[idx], xu[idx])
        y = _restore(problem, y)
        if y is not None:
            y, fy = local_search(problem, y, moves)
            if fy > fx:
                x, fx = y, fy
        # One event per step, restorable or not, so progress reaches its total.
        log({"phase": "polish", "step": step, "total": settings.perturbations, "best_objective": float(fx),
             "feasible_fraction": 1.0, "n_evals": problem.n_evals})
    return x, fx


def _restore(problem, y):
    """Shrink an infeasible vector towards the lower corner until it is feasible (None if impossible)."""
    space = problem.space
    xl, _ = space.bounds
    lam = np.linspace(1.0, 0.0, 41)
    S = space.num_stages
    Y = xl + np.floor(lam[:, None] * (y - xl)).astype(np.int64)
    Y[:, 1 + 2 * S:1 + 3 * S] = y[1 + 2 * S:1 + 3 * S]
    if problem.budget.monotone:
        Y = space.repair_monotone(Y)
    _, G = problem.evaluate_vectors(Y)
    ok = np.flatnonzero(_violation(G) <= 0)
    return Y[ok[0]] if len(ok) else None


def _check_feasible(problem: DeepMADProblem, X0: np.ndarray) -> None:
    """Raise a clear error when the budgets cannot be met: size budgets at the smallest network,
    ρ over the sampler's best effort."""
    b = problem.budget
    x = smallest_network(problem.space)
    ev, G = problem.evaluate_vectors(x[None])
    if _budget_violation(problem, G)[0] > 0:
        parts = [f"MACs {ev.macs[0]:.4g}" + ("" if b.macs is None else f" (budget {b.macs:.4g})"),
                 f"params {ev.params[0]:.4g}" + ("" if b.params is None else f" (budget {b.params:.4g})")]
        if b.max_layers is not None:
            parts.append(f"layers {ev.layers[0]} (max {b.max_layers})")
        if b.latency is not None:
            lat = problem.latency(x[None])[0]
            parts.append(f"predicted latency {lat * 1e3:.4g} ms (budget {b.latency * 1e3:.4g} ms)")
        raise InfeasibleBudgetError(
            "budget: infeasible; the smallest network this space allows has " + ", ".join(parts)
            + f" ({problem.convention} convention)"
        )
    ev, G = problem.evaluate_vectors(X0)
    if not (_violation(G) <= 0).any():
        raise InfeasibleBudgetError(
            f"budget.rho: no network within the size budgets reaches rho <= {b.rho:g} "
            f"(lowest found {ev.rho.min():.3g}); raise --rho or the budgets"
        )
