"""Tests of the continuous relaxation and the GA cross-check (deepmad_evo.relax)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from deepmad_evo.config import load_config
from deepmad_evo.objective import evaluate
from deepmad_evo.relax import (Dual, Relaxation, SqueezeBound, admissible_btn, cross_check, round_and_repair,
                               smoothed_std)
from deepmad_evo.problem import DeepMADProblem
from deepmad_evo.search import run_search
from deepmad_evo.units import se_width

# (preset, convention override, block override): every block family, both conventions, with
# and without a head, and the mbconv stride-2 pooled-residual case (mbv2, tinynas).
SETTINGS = [
    ("tiny", None, None),
    ("tiny", "tinynas", None),
    ("mbv2", None, None),
    ("mb-29m", None, None),
    ("r18", None, None),
    ("r18", "torch", None),
    ("r18", "torch", "basic"),
    ("tiny", None, "mbconv"),
]


def _relaxation(preset, convention=None, block=None, max_layers=None, kernels=None):
    cfg = load_config(preset).with_overrides(convention=convention, block=block)
    space = cfg.search_space()
    budget = replace(cfg.budget, max_layers=max_layers) if max_layers else cfg.budget
    ks = kernels or [space.kernels[i % len(space.kernels)] for i in range(space.num_stages)]
    return cfg, space, Relaxation(space, budget, ks, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)


@pytest.mark.parametrize("preset,convention,block", SETTINGS)
def test_gradients_match_central_differences(preset, convention, block):
    _, _, relax = _relaxation(preset, convention, block, max_layers=150)
    rng = np.random.default_rng(1)
    Z = relax.lower + rng.random((3, relax.n_var)) * (relax.upper - relax.lower)
    values = relax.values(Z)
    h = 1e-6
    for z, obj_grad, jac in zip(Z, values.objective_grad, values.constraints_jac):
        plus = relax.values(z + h * np.eye(relax.n_var), gradients=False)
        minus = relax.values(z - h * np.eye(relax.n_var), gradients=False)
        fd_obj = (plus.objective - minus.objective) / (2 * h)
        fd_jac = ((plus.constraints - minus.constraints) / (2 * h)).T
        np.testing.assert_allclose(obj_grad, fd_obj, rtol=1e-5, atol=1e-5 * np.abs(fd_obj).max())
        for row, fd_row in zip(jac, fd_jac):
            np.testing.assert_allclose(row, fd_row, rtol=1e-5, atol=1e-5 * max(np.abs(fd_row).max(), 1e-12))


@pytest.mark.parametrize("preset,convention,block", SETTINGS)
def test_relaxation_reproduces_the_discrete_evaluation(preset, convention, block):
    """At a discrete genotype: same entropy and ρ; costs and penalty never above the discrete ones."""
    cfg, space, _ = _relaxation(preset, convention, block)
    o = cfg.objective
    for x in space.sample(4, np.random.default_rng(2)):
        g = space.genotype(x)
        relax = Relaxation(space, cfg.budget, [st.k for st in g.stages], o.alpha, o.beta, o.convention)
        v = relax.values(relax.point(g)[None], gradients=False)
        ev = evaluate(g, o.alpha, o.beta, o.convention)
        assert v.entropy[0] == pytest.approx(ev.entropy, rel=1e-12)
        np.testing.assert_allclose(v.rho_prefix[0], ev.rho_prefix, rtol=1e-12)
        assert v.macs[0] <= ev.macs * (1 + 1e-12) and v.params[0] <= ev.params * (1 + 1e-12)
        penalty = ev.weighted_depth_penalty
        assert penalty - 1e-3 * penalty <= v.weighted_depth_penalty[0] <= penalty * (1 + 1e-12)
        if "mbconv_se" not in g.blocks:
            # Without SE the only relaxed cost is the c_in = out pooled residual (tinynas).
            pooled = sum(st.out == c_in and st.s == 2 and st.block == "mbconv"
                         for st, c_in in zip(g.stages, [g.stem.out] + [s.out for s in g.stages]))
            if not pooled or o.convention == "torch":
                assert v.macs[0] == pytest.approx(ev.macs, rel=1e-12)
            assert v.params[0] == pytest.approx(ev.params, rel=1e-12)
        # The discrete point is feasible for the relaxation's btn hull.
        hull = relax.values(relax.point(g)[None], gradients=False).constraints[0, -2 * space.num_stages:]
        assert np.all(hull <= 1e-12)


def test_squeeze_bound_is_below_the_staircase_and_tight_where_it_can_be():
    btn = np.arange(8, 4097, 8)
    bound = SqueezeBound.of(btn)
    assert (bound.offset, bound.floor) == (6.0, 8.0)
    relaxed = bound.value(btn.astype(float))
    assert np.all(relaxed <= se_width(btn) + 1e-12)
    # Exact on the staircase's floor (btn <= 56) and on its lower envelope (btn = 32q + 24, large btn).
    small = btn <= 56
    np.testing.assert_allclose(relaxed[small], 8.0)
    envelope = (btn % 32 == 24) & (btn >= 4 * (6 + 8 + 8))
    np.testing.assert_allclose(relaxed[envelope], se_width(btn[envelope]))


def test_btn_hull_contains_every_discrete_pair():
    for preset in ("r18", "mb-29m"):
        cfg = load_config(preset)
        space = cfg.search_space()
        relax = Relaxation(space, cfg.budget, [space.kernels[0]] * space.num_stages)
        (e_lo, e_hi), (s_lo, s_hi) = relax.expansion_range, relax.btn_slack
        pairs = admissible_btn(space)
        assert np.all(pairs[:, 1] >= e_lo * pairs[:, 0] - s_lo - 1e-9)
        assert np.all(pairs[:, 1] <= e_hi * pairs[:, 0] + s_hi + 1e-9)
        assert 0 <= s_lo <= space.multiple / 2 and 0 <= s_hi <= space.multiple / 2


def test_smoothed_std_is_a_lower_bound_within_epsilon():
    d = np.array([[3.0, 3.0, 3.0], [1.0, 5.0, 9.0], [2.0, 2.0, 2.5]])
    sigma, grad = smoothed_std(d, 1e-3)
    exact = np.std(d, axis=1)
    assert np.all(sigma <= exact + 1e-15) and np.all(sigma >= exact - 1e-3)
    np.testing.assert_array_equal(grad[0], 0.0)  # the subgradient 0 at equal depths


def test_dual_refuses_functions_it_cannot_differentiate():
    x = Dual(np.array([1.0, 2.0]), np.eye(2))
    with pytest.raises(TypeError, match="sin"):
        np.sin(x)
    with pytest.raises(TypeError, match="sort"):
        np.sort(x)
    y = np.column_stack([x, np.array([3.0, 4.0])])
    np.testing.assert_array_equal(y.val, [[1, 3], [2, 4]])
    np.testing.assert_array_equal(y.grad[:, 0], np.eye(2))
    with pytest.raises(TypeError, match="cumsum"):  # the evaluator needs no cumsum; none is offered
        np.cumsum(y, axis=1)
    assert not np.any(x == x)  # real widths never coincide in the relaxation


@pytest.mark.parametrize("preset,convention,block", SETTINGS)
def test_dual_fast_paths_equal_the_general_broadcasting_path(preset, convention, block, monkeypatch):
    """The scalar / equal-shape / same-shape-array shortcuts of ``dual._binary`` change no bit."""
    from deepmad_evo.relax import dual

    _, _, relax = _relaxation(preset, convention, block, max_layers=150)
    rng = np.random.default_rng(2)
    Z = relax.lower + rng.random((4, relax.n_var)) * (relax.upper - relax.lower)
    fast = [relax.values(Z)] + [relax.values(z[None]) for z in Z]
    monkeypatch.setattr(dual, "_binary", dual._general)
    general = [relax.values(Z)] + [relax.values(z[None]) for z in Z]
    for a, b in zip(fast, general):
        for name in ("objective", "objective_grad", "constraints", "constraints_jac"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@functools.lru_cache(maxsize=None)
def _cached_search(preset, settings: tuple):
    return _run_search(preset, **dict(settings))


def _search(preset, **settings):
    """The preset's search (deterministic, so shared between tests)."""
    return _cached_search(preset, tuple(sorted(settings.items())))


def _run_search(preset, **settings):
    cfg = load_config(preset)
    o = cfg.objective
    result = run_search(cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta, convention=o.convention,
                        settings=cfg.search_settings(jobs=1, **settings), seed=cfg.search.seed)
    return cfg, result


def _feasible(cfg, genotype):
    ev = evaluate(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    b = cfg.budget
    outs = [st.out for st in genotype.stages]
    return (ev.rho <= b.rho and ev.macs <= b.macs and ev.params <= b.params
            and all(a <= c for a, c in zip(outs, outs[1:])))


@pytest.mark.parametrize("preset,settings", [
    ("tiny", {}),
    ("r18", {"pop_size": 40, "generations": 15, "restarts": 1, "chains": 1, "perturbations": 5, "finish": 0}),
])
def test_cross_check_bounds_the_ga_and_rounds_to_a_feasible_genotype(preset, settings):
    cfg, result = _search(preset, **settings)
    cc = cross_check(result, cfg.search_space(), alpha=cfg.objective.alpha, beta=cfg.objective.beta, seed=0)
    assert cc.ga_objective == pytest.approx(result.objective)
    assert cc.relaxed_objective >= cc.ga_objective
    assert cc.depth_fixed_objective >= cc.ga_objective
    assert cc.relaxed_objective >= cc.depth_fixed_objective
    assert cc.gap == pytest.approx(cc.depth_gap + cc.width_gap)
    assert 0 <= cc.gap < 0.2
    assert cc.rounded_genotype is not None and _feasible(cfg, cc.rounded_genotype)
    assert cc.rounded_objective >= cc.repaired_objective - 1e-9
    assert [s.origin for s in cc.starts] == ["ga", "random[0]", "random[1]", "random[2]", "ga-depths"]
    assert all(s.feasible and s.converged for s in cc.starts)
    assert cc.best_genotype == (cc.rounded_genotype if cc.rounded_objective > cc.ga_objective else result.genotype)
    record = json.loads(json.dumps(cc.to_dict()))
    assert {"ga_objective", "relaxed_objective", "rounded_objective", "gap", "solver_seconds"} <= set(record)


def test_cross_check_is_deterministic_for_a_seed():
    cfg = load_config("tiny")
    space = cfg.search_space()
    g = space.genotype(space.encode(_search("tiny")[1].genotype))
    runs = [cross_check(g, space, cfg.budget, alpha=cfg.objective.alpha, seed=3) for _ in range(2)]
    assert runs[0].relaxed_objective == runs[1].relaxed_objective
    assert runs[0].rounded_genotype == runs[1].rounded_genotype
    assert [s.objective for s in runs[0].starts] == [s.objective for s in runs[1].starts]


def test_solver_failures_are_reported():
    cfg, result = _search("tiny")
    space = cfg.search_space()
    cc = cross_check(result, space, alpha=cfg.objective.alpha, maxiter=1, random_starts=1)
    assert all(s.status == 9 and not s.converged for s in cc.starts)
    assert any("did not converge" in w or "ended infeasible" in w for w in cc.warnings)

    # A start that breaks the budget: the GA's genotype under a budget it exceeds.
    tight = replace(cfg.budget, macs=0.8 * result.evaluation.macs)
    cc = cross_check(result.genotype, space, tight, alpha=cfg.objective.alpha, random_starts=1)
    assert not cc.ga_feasible
    assert any("breaks the budget (MACs" in w for w in cc.warnings)
    assert any(w.startswith("start ga ") and "began infeasible" in w for w in cc.warnings)
    assert cc.starts[0].start_violation > 0
    assert not cc.improved  # never "beats" an infeasible GA answer
    if cc.rounded_genotype is not None:
        assert _feasible(replace(cfg, budget=tight), cc.rounded_genotype)

    # An evaluation budget stops SLSQP and says so.
    relax = Relaxation(space, cfg.budget, [st.k for st in result.genotype.stages], cfg.objective.alpha)
    _, info = relax.solve(relax.point(result.genotype), max_evaluations=2)
    assert info["status"] == -1 and "Evaluation limit" in info["message"]


def test_rounding_repairs_an_infeasible_relaxed_point():
    cfg, result = _search("tiny")
    space = cfg.search_space()
    problem = DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    relax = Relaxation(space, cfg.budget, [st.k for st in result.genotype.stages], cfg.objective.alpha)
    z, _ = relax.solve(relax.point(result.genotype))
    for candidate in (z, z + np.r_[0.05, np.full(3, 0.05), np.full(3, 0.05), np.full(3, 0.4)]):
        found = round_and_repair(problem, relax, candidate)
        assert found, "no feasible rounding"
        for x, f in found:
            _, G = problem.evaluate_vectors(x[None])
            assert np.all(G <= 0)
            assert f == pytest.approx(evaluate(space.genotype(x), cfg.objective.alpha).objective)


def test_cross_check_rejects_bad_input():
    cfg = load_config("tiny")
    g = cfg.search_space().genotype(cfg.search_space().bounds[0])
    with pytest.raises(ValueError, match="budget: required"):
        cross_check(g, cfg.search_space())
    with pytest.raises(ValueError, match="kernels: expected"):
        cross_check(g, cfg.search_space(), cfg.budget, kernels="all")
    other = load_config("mbv2").search_space()
    with pytest.raises(ValueError, match="template"):
        cross_check(g, other, cfg.budget)


def test_relax_module_stays_torch_free():
    code = "import sys, deepmad_evo.relax; assert 'torch' not in sys.modules and 'rich' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_budget_without_rho():
    cfg, result = _search("tiny")
    budget = replace(cfg.budget, rho=None)
    space = cfg.search_space()
    relax = Relaxation(space, budget, [st.k for st in result.genotype.stages], cfg.objective.alpha)
    assert not any(n.startswith("rho") for n in relax.constraint_names)
    cc = cross_check(result.genotype, space, budget, alpha=cfg.objective.alpha, random_starts=1)
    assert cc.relaxed_objective >= cc.ga_objective and cc.relaxed_costs["rho"] > 0


@pytest.mark.slow  # branch and bound over 40 SLSQP nodes
def test_integral_depth_bound_sits_between_the_discrete_and_the_relaxed_optimum():
    cfg, result = _search("tiny")
    space = cfg.search_space()
    cc = cross_check(result, space, alpha=cfg.objective.alpha, random_starts=0, depth_nodes=40)
    b = cc.depth_bound
    assert b["complete"] and b["nodes"] <= 40
    assert max(cc.ga_objective, cc.rounded_objective) == pytest.approx(b["best_discrete"])
    assert b["best_discrete"] <= b["bound"] <= cc.relaxed_objective + 1e-6
    assert b["gap"] == pytest.approx((b["bound"] - b["best_discrete"]) / b["bound"])
    # Any integral depth vector's relaxed optimum (widths real) is below the bound.
    relax = Relaxation(space, cfg.budget, cc.kernels, cfg.objective.alpha)
    z0 = relax.point(result.genotype)
    for depth in ([st.depth for st in result.genotype.stages], [st.depth for st in cc.rounded_genotype.stages],
                  [1, 4, 5], [2, 4, 4]):
        lo, hi = relax.lower.copy(), relax.upper.copy()
        lo[relax.i_depth] = hi[relax.i_depth] = depth
        z, _ = relax.solve(z0, lower=lo, upper=hi)
        if relax.violation(z)[0] <= 1e-6:
            assert relax.values(z[None], gradients=False).objective[0] <= b["bound"] + 1e-6


def _enumerable_problem():
    """A 3-stage space small enough to list every genotype (2·4³·3³·3³ = 93 312 vectors, one kernel)."""
    from deepmad_evo.problem import Budget
    from deepmad_evo.space import SearchSpace

    template = load_config("tiny").template
    space = SearchSpace(template, (8, 16), (16, 32, 48, 64), (2.0, 4.0, 6.0), (3,), (1, 1, 1), (3, 3, 3))
    budget = Budget(rho=0.5, macs=3e6, params=40e3, monotone=True)
    return space, budget, DeepMADProblem(space, budget, (1.0, 1.0, 8.0))


@functools.lru_cache(maxsize=None)
def _exhaustive_optimum():
    """(space, budget, vectors, objectives, feasible indices) of the enumerable problem."""
    import itertools

    space, budget, problem = _enumerable_problem()
    xl, xu = space.bounds
    X = np.array(list(itertools.product(*[range(a, b + 1) for a, b in zip(xl, xu)])))
    ev, G = problem.evaluate_vectors(X)
    return space, budget, X, ev.objective, np.flatnonzero((G <= 0).all(axis=1))


@pytest.mark.parametrize("bound_gap,widths", [(0.0, False), (0.0, True), (0.004, True)])
def test_integral_depth_bound_is_above_the_exhaustive_optimum(bound_gap, widths):
    space, budget, X, objective, feasible = _exhaustive_optimum()
    assert 0 < len(feasible) < len(X)  # the budgets bind
    best = int(feasible[np.argmax(objective[feasible])])
    optimum = float(objective[best])
    genotype = space.genotype(X[best])
    # Start from the worst feasible genotype so the bound cannot lean on a good incumbent.
    worst = space.genotype(X[feasible[np.argmin(objective[feasible])]])
    cc = cross_check(worst, space, budget, alpha=(1.0, 1.0, 8.0), random_starts=0, depth_nodes=500,
                     bound_gap=bound_gap, bound_widths=widths)
    b = cc.depth_bound
    assert b["complete"] and b["open"] == 0
    assert b["bound"] >= optimum - 1e-9 * abs(optimum)
    assert cc.relaxed_objective >= optimum - 1e-9 * abs(optimum)
    # What the cross-check returns is a genotype of the space, feasible, never above the optimum.
    found = max(cc.ga_objective, cc.rounded_objective)
    assert found <= optimum + 1e-9 * abs(optimum)
    assert b["best_discrete"] == pytest.approx(found)
    assert evaluate(genotype, (1.0, 1.0, 8.0)).objective == pytest.approx(optimum)
    # The gap stop costs at most its own fraction; width splits close the gap left by real widths
    # (without them the leaves' real widths leave > 1 % here).
    if widths:
        assert b["width_splits"] > 0 and b["gap"] <= bound_gap / (1 + bound_gap) + 1e-3
    else:
        assert b["width_splits"] == 0 and b["gap"] > 0.01


def test_expansion_rows_contain_every_discrete_pair_of_their_expansions():
    # A node's btn rows for expansions in [e_a, e_b] hold every (c, btn(c, e)) with e in that range.
    relax = _relaxation("r18")[2]
    E, table = relax.expansions, relax.btn_table
    channels = np.asarray(relax.space.channels, dtype=float)
    for a, b in [(0, 0), (0, 3), (2, 5), (len(E) - 1, len(E) - 1)]:
        s_lo, s_hi = relax.expansion_slack[0][a], relax.expansion_slack[1][b]
        btn = table[:, a:b + 1]
        assert np.all(E[a] * channels[:, None] - s_lo <= btn + 1e-9)
        assert np.all(btn <= E[b] * channels[:, None] + s_hi + 1e-9)
    assert np.all(np.diff(table, axis=0) >= 0) and np.all(np.diff(table, axis=1) >= 0)


def test_lockstep_runs_are_the_serial_runs():
    # Side by side or one by one, SLSQP makes the same steps: same points, statuses and counts,
    # also for a run stopped by its evaluation limit.
    from deepmad_evo.relax.lockstep import solve_many

    relax = _relaxation("mb-29m")[2]
    z0 = relax.sample(1, np.random.default_rng(0))[0]
    starts = [(z0, None, None)]
    for i in range(relax.S):
        lo, hi = relax.lower.copy(), relax.upper.copy()
        hi[relax.i_depth[i]] = np.floor(z0[relax.i_depth[i]])
        starts.append((z0, lo, hi))
    for limit in (None, 6):
        serial = [relax.solve(z, lower=lo, upper=hi, max_evaluations=limit) for z, lo, hi in starts]
        together = solve_many(relax, starts, max_evaluations=limit)
        for (z1, i1), (z2, i2) in zip(serial, together):
            assert np.array_equal(z1, z2)
            assert (i1["status"], i1["evaluations"]) == (i2["status"], i2["evaluations"])
        assert limit is None or any(i["status"] == -1 for _, i in together)


def test_propagation_keeps_every_discrete_genotype_of_a_node():
    # Random nodes of the enumerable space: every monotone genotype inside a node is inside its
    # propagated bounds, and a node propagated to None holds none.
    from deepmad_evo.relax.depth_bound import propagate

    space, budget, X, _, _ = _exhaustive_optimum()
    X = X[np.all(np.diff(X[:, 1:4], axis=1) >= 0, axis=1)]
    relax = Relaxation(space, budget, (3, 3, 3), (1.0, 1.0, 8.0))
    S = relax.S
    stem, out, btn, _, depth = space.decode(X)
    Z = np.column_stack([np.log(stem), np.log(out), np.log(btn), depth])
    K = X[:, 1 + S:1 + 2 * S]
    rng = np.random.default_rng(0)
    grids = relax.grids()
    emptied = 0
    for _ in range(200):
        lo, hi = relax.lower.copy(), relax.upper.copy()
        k_lo, k_hi = np.zeros(S, dtype=int), np.full(S, len(relax.expansions) - 1)
        for j in rng.choice(relax.n_var, 4, replace=False):
            if grids[j] is None:
                lo[j] = hi[j] = rng.integers(lo[j], hi[j] + 1)
            else:
                a, b = np.sort(rng.uniform(lo[j], hi[j], 2))
                lo[j], hi[j] = a, b
        i = rng.integers(S)
        k_lo[i], k_hi[i] = np.sort(rng.integers(0, len(relax.expansions), 2))
        inside = (np.all((Z >= lo - 1e-12) & (Z <= hi + 1e-12), axis=1)
                  & np.all((K >= k_lo) & (K <= k_hi), axis=1))
        box = propagate(relax, (lo, hi, k_lo, k_hi))
        if box is None:
            emptied += 1
            assert not inside.any()
            continue
        p_lo, p_hi, p_klo, p_khi = box
        assert np.all(p_lo >= lo - 1e-12) and np.all(p_hi <= hi + 1e-12)
        kept = (np.all((Z >= p_lo - 1e-9) & (Z <= p_hi + 1e-9), axis=1)
                & np.all((K >= p_klo) & (K <= p_khi), axis=1))
        assert np.all(kept[inside])
    assert 0 < emptied < 200
