"""Random networks at one budget, spread evenly over ρ: the population of the paper's Fig. 2 experiment.

The paper trains random networks that share the FLOPs and parameters of a reference network and looks
at accuracy against ρ and entropy. ``sample_networks`` draws such networks for any search space:

1. Random genotype vectors (uniform widths, expansions and kernels; depths drawn around a random depth
   level per network, so shallow-wide and deep-narrow networks — low and high ρ — both occur).
2. Every vector is scaled towards the space's lower corner with two factors, one for the early stages
   (stem and first half: most of the MACs) and one for the late stages (most of the parameters), on a
   grid evaluated in one vectorised pass; a grid point whose MACs *and* parameters are both within
   ``[(1 − tolerance)·budget, budget]`` is kept (a random one of them, per vector).
3. The ρ range is cut into ``n`` equal strata and one kept network is chosen at random per stratum;
   rounds repeat until every stratum has one, so the spread is by construction, not by chance.

Numpy only (no torch): ~10⁵–10⁶ candidate networks per second on one core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..genotype import Genotype, save_genotype
from ..io import atomic_write_text
from ..objective import DEFAULT_BETA
from ..problem import Budget, DeepMADProblem
from ..space import SearchSpace

INDEX = "index.json"
INDEX_FORMAT = "deepmad-evo/samples/1"
GRID = 12  # scale factors per group: GRID² candidates per random vector


class SamplingError(ValueError):
    """The requested population cannot be drawn (budgets, ρ range or tolerance out of reach)."""


@dataclass(frozen=True)
class Sample:
    """One sampled network and what the objective says about it."""

    index: int
    genotype: Genotype
    x: tuple[int, ...]
    rho: float
    entropy: float
    objective: float
    macs: float
    params: float
    stratum: tuple[float, float]

    def to_dict(self) -> dict:
        return {"index": self.index, "name": f"{self.index:03d}", "rho": self.rho, "entropy": self.entropy,
                "objective": self.objective, "macs": self.macs, "params": self.params,
                "stratum": list(self.stratum), "x": list(self.x), "text": self.genotype.to_text()}


@dataclass(frozen=True)
class SampleSet:
    """The drawn networks (ordered by ρ) and how they were drawn."""

    samples: tuple[Sample, ...]
    rho_range: tuple[float, float]
    tolerance: float
    budget: Budget
    seed: int
    candidates: int  # candidate networks evaluated
    rounds: int

    def to_dict(self) -> dict:
        b = self.budget
        return {"format": INDEX_FORMAT, "n": len(self.samples), "rho_range": list(self.rho_range),
                "tolerance": self.tolerance, "budget": {"macs": b.macs, "params": b.params},
                "seed": self.seed, "candidates": self.candidates, "rounds": self.rounds,
                "samples": [s.to_dict() for s in self.samples]}


def _check(n: int, rho_range: Sequence[float], tolerance: float, budget: Budget) -> tuple[float, float]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 10_000:
        raise SamplingError(f"--n: expected an integer from 1 to 10000, got {n!r}")
    lo, hi = (float(v) for v in rho_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise SamplingError(f"--rho-range: expected 0 < MIN < MAX, got {lo:g} {hi:g}")
    if not (np.isfinite(tolerance) and 0 < tolerance < 1):
        raise SamplingError(f"--tolerance: expected a fraction between 0 and 1 (e.g. 0.05), got {tolerance:g}")
    if budget.macs is None or budget.params is None:
        raise SamplingError("budget: sampling needs both a MAC budget (--budget) and a parameter budget (--params)")
    return lo, hi


def _groups(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the width variables of the early (stem + first half of the stages) and late stages."""
    S = space.num_stages
    early, late = np.zeros(space.n_var, bool), np.zeros(space.n_var, bool)
    early[0] = True
    for i in range(S):
        group = early if i < max(1, S // 2) else late
        group[1 + i] = group[1 + S + i] = True
    return early, late


def _random_vectors(space: SearchSpace, m: int, rng: np.random.Generator) -> np.ndarray:
    S = space.num_stages
    X = space.sample(m, rng)
    xl, xu = space.bounds
    dl, du = xl[1 + 3 * S:], xu[1 + 3 * S:]
    level = rng.random(m)[:, None]  # a depth level per network: from all-shallow to all-deep
    X[:, 1 + 3 * S:] = dl + rng.binomial(du - dl, level)
    return X


def _matched(problem: DeepMADProblem, X: np.ndarray, tolerance: float, rng: np.random.Generator):
    """Per vector, a random grid scaling within the tolerance window of both budgets (or none)."""
    space, b = problem.space, problem.budget
    xl, _ = space.bounds
    early, late = _groups(space)
    lam = np.linspace(0.0, 1.0, GRID + 1)[1:]
    l1, l2 = (a.ravel() for a in np.meshgrid(lam, lam, indexing="ij"))
    g = len(l1)
    scale = np.where(early, l1[:, None], np.where(late, l2[:, None], 1.0))  # (g, n_var)
    Y = xl + np.floor(scale[None] * (X - xl)[:, None, :] + 1e-9).astype(np.int64)
    Y = Y.reshape(-1, space.n_var)
    if b.monotone:
        Y = space.repair_monotone(Y)
    ev, _ = problem.evaluate_vectors(Y)
    rm, rp = ev.macs / b.macs, ev.params / b.params
    ok = ((rm >= 1 - tolerance) & (rm <= 1) & (rp >= 1 - tolerance) & (rp <= 1)).reshape(len(X), g)
    # A random admissible grid point per vector: argmax of random keys restricted to admissible ones.
    keys = np.where(ok, rng.random(ok.shape), -1.0)
    pick = np.argmax(keys, axis=1)
    rows = np.flatnonzero(ok.any(axis=1))
    return Y[rows * g + pick[rows]]


def sample_networks(space: SearchSpace, budget: Budget, n: int, rho_range: Sequence[float] = (0.1, 1.5), *,
                    tolerance: float = 0.05, alpha=None, beta: float = DEFAULT_BETA, convention: str = "torch",
                    seed: int = 0, batch: int = 1024, max_rounds: int = 200,
                    callback: Callable[[dict], None] | None = None) -> SampleSet:
    """``n`` random networks whose MACs and params are within ``tolerance`` below both budgets, one per ρ stratum.

    Args:
        space: the search space (template and admissible values) the networks come from.
        budget: MAC and parameter budgets (both required); ``monotone`` keeps stage channels
            non-decreasing; ``rho`` is ignored (ρ is what is spread).
        n: number of networks = number of equal-width strata of ``rho_range``.
        rho_range: (min, max) of ρ.
        tolerance: MACs and params each lie in ``[(1 − tolerance)·budget, budget]``.
        alpha, beta, convention: objective weights and cost convention (as for the search).
        seed: the only source of randomness; the same seed gives the same networks.
        batch: random vectors per round (each costs GRID² evaluations).
        max_rounds: give up after this many rounds with strata still empty.
        callback: receives {"round", "rounds", "filled", "n", "candidates"} after each round.

    Returns:
        A ``SampleSet`` ordered by ρ.

    Raises:
        SamplingError: for bad arguments, or when some strata stay empty, naming them and the ρ
            range that was reached.
    """
    lo, hi = _check(n, rho_range, tolerance, budget)
    problem = DeepMADProblem(space, Budget(rho=None, macs=budget.macs, params=budget.params,
                                           monotone=budget.monotone), alpha, beta, convention)
    rng = np.random.default_rng(seed)
    edges = np.linspace(lo, hi, n + 1)
    chosen: list[np.ndarray | None] = [None] * n
    seen_lo, seen_hi, candidates, rounds = np.inf, -np.inf, 0, 0
    report = callback or (lambda info: None)
    while rounds < max_rounds and any(c is None for c in chosen):
        rounds += 1
        X = _matched(problem, _random_vectors(space, batch, rng), tolerance, rng)
        candidates += batch * GRID * GRID
        if len(X):
            rho = problem.evaluate_vectors(X)[0].rho
            seen_lo, seen_hi = min(seen_lo, rho.min()), max(seen_hi, rho.max())
            stratum = np.searchsorted(edges, rho, side="right") - 1
            stratum[rho == hi] = n - 1
            for k in np.unique(stratum[(stratum >= 0) & (stratum < n)]):
                if chosen[k] is None:
                    members = np.flatnonzero(stratum == k)
                    chosen[k] = X[members[rng.integers(len(members))]]
        report({"round": rounds, "rounds": max_rounds, "filled": sum(c is not None for c in chosen), "n": n,
                "candidates": candidates})
    empty = [k for k, c in enumerate(chosen) if c is None]
    if empty:
        reached = "no budget-matched network at all" if not np.isfinite(seen_lo) else \
            f"budget-matched networks reached rho {seen_lo:.3g} to {seen_hi:.3g}"
        where = ", ".join(f"[{edges[k]:.3g}, {edges[k + 1]:.3g})" for k in empty[:3]) + (" …" if len(empty) > 3 else "")
        raise SamplingError(f"--rho-range: {len(empty)} of {n} rho strata stayed empty after {rounds} rounds "
                            f"({where}); {reached} within {100 * tolerance:g} % of both budgets; expected a "
                            "narrower --rho-range, a larger --tolerance or fewer --n")
    X = np.array(chosen)
    ev, _ = problem.evaluate_vectors(X)
    samples = tuple(
        Sample(k, space.genotype(X[k]), tuple(int(v) for v in X[k]), float(ev.rho[k]), float(ev.entropy[k]),
               float(ev.objective[k]), float(ev.macs[k]), float(ev.params[k]), (float(edges[k]), float(edges[k + 1])))
        for k in range(n))
    return SampleSet(samples, (lo, hi), float(tolerance), budget, int(seed), candidates, rounds)


def write_samples(result: SampleSet, out_dir: str | Path, config: dict | None = None,
                  reference: tuple[Genotype, dict] | None = None) -> Path:
    """``out_dir/index.json`` (ρ, entropy, objective, costs of every network, the config) and one
    ``genotypes/NNN.json`` per network, every file written atomically; returns the index path.

    Args:
        result: the sampled networks.
        out_dir: the sample directory.
        config: the resolved search config (JSON form), recorded in the index.
        reference: the DeepMAD design at ρ0 for the same budgets and its record (rho0, rho, entropy,
            objective, macs, params), stored as ``genotypes/deepmad.json`` and ``index["reference"]``.
    """
    out_dir = Path(out_dir)
    for s in result.samples:
        save_genotype(s.genotype, out_dir / "genotypes" / f"{s.index:03d}.json")
    record = result.to_dict()
    if config is not None:
        record["config"] = config
    if reference is not None:
        genotype, facts = reference
        save_genotype(genotype, out_dir / "genotypes" / "deepmad.json")
        record["reference"] = {**facts, "name": "deepmad", "text": genotype.to_text()}
    index = out_dir / INDEX
    atomic_write_text(index, json.dumps(record, indent=1) + "\n")
    return index


def load_samples(directory: str | Path) -> dict:
    """Read a sample directory's index; one-line errors naming the file when it is missing or foreign."""
    path = Path(directory) / INDEX
    if not path.is_file():
        raise ValueError(f"DIR: {str(directory)!r} holds no {INDEX}; expected a directory written by `run.py sample`")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(record, dict) or record.get("format") != INDEX_FORMAT or not isinstance(record.get("samples"), list):
        raise ValueError(f"{path}: not a {INDEX_FORMAT} index; expected a directory written by `run.py sample`")
    for i, s in enumerate(record["samples"]):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str) or not isinstance(s.get("name"), str):
            raise ValueError(f"{path}: samples[{i}] lacks its name or genotype text")
    return record
