"""Search space, pymoo problem and the search: constraints hold, seeds reproduce, errors are clear."""

import numpy as np
import pytest

from deepmad_evo.config import load_config
from deepmad_evo.objective import evaluate
from deepmad_evo.problem import Budget, DeepMADProblem
from deepmad_evo.search import InfeasibleBudgetError, SearchSettings, feasible_samples, run_search

FAST = SearchSettings(pop_size=30, generations=15, restarts=2, polish_top=2, perturbations=5, chains=2, jobs=1)


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("tiny")
    return cfg, cfg.search_space()


def _run(cfg, space, seed=0, settings=FAST, budget=None):
    return run_search(space, budget or cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                      convention=cfg.objective.convention, settings=settings, seed=seed)


def test_decode_encode_round_trip(tiny):
    # Several expansion ratios can round to the same btn, so the vector is not unique: the genotype is.
    _, space = tiny
    rng = np.random.default_rng(0)
    X = space.repair_monotone(space.sample(200, rng))
    for x in X:
        g = space.genotype(x)
        assert space.genotype(space.encode(g)) == g


def test_btn_rule(tiny):
    _, space = tiny
    stem, out, btn, k, d = space.decode(space.repair_monotone(space.sample(500, np.random.default_rng(1))))
    assert (btn % space.multiple == 0).all() and (btn >= space.multiple).all()
    ratio = btn / out
    assert (ratio <= max(space.expansions) + space.multiple / out).all()


def test_problem_matches_scalar_evaluation(tiny):
    cfg, space = tiny
    problem = DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    X = space.repair_monotone(space.sample(50, np.random.default_rng(2)))
    out = {}
    problem._evaluate(X, out)
    for x, f, g in zip(X, out["F"][:, 0], out["G"]):
        ev = evaluate(space.genotype(x), cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
        assert -f == pytest.approx(ev.objective, rel=1e-12)
        assert g[0] == pytest.approx(ev.rho / cfg.budget.rho - 1)
        assert g[1] == pytest.approx(ev.macs / cfg.budget.macs - 1)
        assert g[2] == pytest.approx(ev.params / cfg.budget.params - 1)


def test_feasible_samples_are_feasible(tiny):
    cfg, space = tiny
    problem = DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    X = feasible_samples(problem, 64, np.random.default_rng(3))
    _, G = problem.evaluate_vectors(X)
    assert (G <= 0).all()


def test_result_satisfies_every_constraint(tiny):
    cfg, space = tiny
    for seed in range(3):
        r = _run(cfg, space, seed)
        ev = evaluate(r.genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
        assert r.feasible
        assert ev.macs <= cfg.budget.macs and ev.params <= cfg.budget.params and ev.rho <= cfg.budget.rho
        outs = [s.out for s in r.genotype.stages]
        assert outs == sorted(outs)
        assert r.objective == pytest.approx(ev.objective)
        assert r.genotype.blocks == space.template.blocks


def test_same_seed_same_result(tiny):
    cfg, space = tiny
    a, b = _run(cfg, space, 5), _run(cfg, space, 5)
    assert a.genotype == b.genotype and a.objective == b.objective and a.n_evals == b.n_evals
    assert [h["best_objective"] for h in a.history] == [h["best_objective"] for h in b.history]


def test_history_is_json_ready(tiny):
    import json

    cfg, space = tiny
    history = _run(cfg, space, 1).history
    assert {h["phase"] for h in history} == {"ga", "polish"}
    s = FAST
    # The CLI's progress bars count these events against exactly these totals.
    assert sum(h["phase"] == "ga" for h in history) == s.chains * s.restarts * s.generations
    assert sum(h["phase"] == "polish" for h in history) == s.chains * s.perturbations + s.relax + s.finish
    json.dumps(history)  # run.json stores it; numpy scalars or arrays would break the write
    assert all(type(v) in (int, float, str) for h in history for v in h.values())


def test_result_does_not_depend_on_worker_count(tiny):
    from dataclasses import replace

    cfg, space = tiny
    one = _run(cfg, space, 4, settings=replace(FAST, chains=3, jobs=1))
    two = _run(cfg, space, 4, settings=replace(FAST, chains=3, jobs=2))
    assert one.genotype == two.genotype and one.objective == two.objective and one.n_evals == two.n_evals
    assert sorted(h["chain"] for h in one.history) == sorted(h["chain"] for h in two.history)


def test_search_beats_random_sampling(tiny):
    cfg, space = tiny
    problem = DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    X = feasible_samples(problem, 2000, np.random.default_rng(9))
    ev, G = problem.evaluate_vectors(X)
    best_random = ev.objective[(G <= 0).all(axis=1)].max()
    assert _run(cfg, space, 0).objective > best_random


def test_no_monotone_means_no_monotone_column(tiny):
    cfg, space = tiny
    budget = Budget(rho=0.5, macs=cfg.budget.macs, params=None, monotone=False)
    assert budget.names == ("rho", "macs")
    r = _run(cfg, space, 0, budget=budget)
    assert r.feasible


def test_infeasible_budget_names_the_smallest_network(tiny):
    cfg, space = tiny
    with pytest.raises(InfeasibleBudgetError, match=r"budget: infeasible; the smallest network this space allows has MACs"):
        _run(cfg, space, 0, budget=Budget(rho=0.5, macs=1e3, params=None))


def test_unreachable_rho(tiny):
    cfg, space = tiny
    with pytest.raises(InfeasibleBudgetError, match=r"budget.rho: no network within the size budgets reaches rho <= 0.001"):
        _run(cfg, space, 0, budget=Budget(rho=0.001, macs=cfg.budget.macs, params=None))
