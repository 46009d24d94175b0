"""The search's pieces work with plain pymoo: the sampler, the repair on a wrapped problem, decode, a Callback."""

import numpy as np
import pytest
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.problem import Problem
from pymoo.optimize import minimize

from deepmad_evo.config import load_config
from deepmad_evo.problem import DeepMADProblem, MonotoneRepair
from deepmad_evo.search import FeasibleSampling, SearchSettings, run_search


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("tiny")
    space = cfg.search_space()
    return cfg, space, DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta,
                                      cfg.objective.convention)


class BiObjective(Problem):
    """A user's wrapper: (−objective, MACs) under the same constraints; it has no ``space`` or ``budget``."""

    def __init__(self, inner: DeepMADProblem):
        self.inner = inner
        super().__init__(n_var=inner.n_var, n_obj=2, n_ieq_constr=inner.n_ieq_constr, xl=inner.xl, xu=inner.xu,
                         vtype=int)

    def _evaluate(self, X, out, *args, **kwargs):
        ev, G = self.inner.evaluate_vectors(np.asarray(X))
        out["F"] = np.column_stack([-ev.objective, ev.macs])
        out["G"] = G


def test_sampler_and_repair_drive_another_algorithm_on_a_wrapped_problem(tiny):
    cfg, space, problem = tiny
    algorithm = NSGA2(pop_size=24, sampling=FeasibleSampling(problem), repair=MonotoneRepair(space, True))
    res = minimize(BiObjective(problem), algorithm, ("n_gen", 5), seed=2)
    assert res.X is not None and len(np.atleast_2d(res.X)) >= 1
    X = np.atleast_2d(res.X).astype(np.int64)
    out = space.decode(X)[1]
    assert np.all(np.diff(out, axis=1) >= 0)  # the repair kept channels non-decreasing
    assert np.all(problem.evaluate_vectors(X)[1] <= 0)


def test_feasible_sampling_uses_the_algorithm_random_state(tiny):
    _, _, problem = tiny
    a = FeasibleSampling(problem).do(problem, 16, random_state=np.random.default_rng(5)).get("X")
    b = FeasibleSampling(problem).do(problem, 16, random_state=np.random.default_rng(5)).get("X")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, problem.n_var) and np.all(problem.evaluate_vectors(a)[1] <= 0)


def test_decode_rejects_non_integers_and_out_of_range(tiny):
    _, space, _ = tiny
    x = space.bounds[0].copy()
    assert space.decode(x[None].astype(float))[0][0] == space.decode(x[None])[0][0]  # whole floats are fine
    bad = x[None].astype(float)
    bad[0, 1] += 0.5
    with pytest.raises(ValueError, match=r"X\[0, 1\]: expected an integer genotype vector, got [0-9.]*\.5$"):
        space.decode(bad)
    high = x[None].copy()
    high[0, 0] = space.bounds[1][0] + 1
    with pytest.raises(ValueError, match=r"X\[0, 0\]: expected an integer in \[0, "):
        space.decode(high)


def test_run_search_calls_a_pymoo_callback_each_generation(tiny):
    cfg, space, _ = tiny

    class Count(Callback):
        def notify(self, algorithm):
            self.data["generations"] = self.data.get("generations", 0) + 1

    count = Count()
    settings = SearchSettings(pop_size=12, generations=4, restarts=2, chains=1, local_search=False, jobs=1)
    run_search(space, cfg.budget, alpha=cfg.objective.alpha, settings=settings, seed=0, algorithm_callback=count)
    assert count.data["generations"] == settings.generations * settings.restarts


def test_readme_example_runs():
    """The README's "another pymoo algorithm" snippet, executed as written."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "FeasibleSampling" in b)
    namespace: dict = {}
    exec(compile(snippet.replace('("n_gen", 30)', '("n_gen", 3)'), "README.md", "exec"), namespace)
    assert namespace["res"].CV[0] <= 0
