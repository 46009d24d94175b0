"""Budget points of a Pareto run, their seeds, and one DeepMAD search per point with its resume record."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..config import Config
from ..genotype import Genotype
from ..io import atomic_write_text, dumps_json, json_number
from ..objective import evaluate
from ..problem import Budget, DeepMADProblem
from ..search import InfeasibleBudgetError, SearchSettings, run_search, smallest_network
from ..space import SearchSpace

Callback = Callable[[dict], None]

RECORD_FORMAT = "deepmad-evo/pareto-budget/1"


@dataclass(frozen=True)
class BudgetPoint:
    """One point of a Pareto run: a MAC budget and its params budget (``None``: no params budget), or a
    latency budget in seconds (predicted from the config's latency table; then ``macs`` is ``None``)."""

    macs: float | None
    params: float | None = None
    latency: float | None = None

    @property
    def label(self) -> str:
        return latency_label(self.latency) if self.latency is not None else quantity_label(self.macs)

    @property
    def x(self) -> float:
        """The point's budget on the run's x-axis (MACs, or latency)."""
        return self.latency if self.latency is not None else self.macs

    def record(self, cfg: Config) -> dict:
        """The budget as resume records and ``pareto.json`` hold it."""
        d = {"label": self.label, "macs": self.macs, "params": self.params, "rho": cfg.budget.rho}
        return {**d, "latency": self.latency} if self.latency is not None else d


def latency_label(seconds: float) -> str:
    """Short exact label of a latency budget: 0.005 → ``5ms``, 0.0125 → ``12.5ms``."""
    return np.format_float_positional(seconds * 1e3, trim="-") + "ms"


def latency_points(latency: Sequence[float]) -> tuple[BudgetPoint, ...]:
    """Latency-budget points (no MAC or params budget), sorted.

    Raises:
        ValueError: for duplicates.
    """
    points = tuple(BudgetPoint(None, None, float(t)) for t in sorted(latency))
    labels = [p.label for p in points]
    for a, b in zip(labels, labels[1:]):
        if a == b:
            raise ValueError(f"--latency: {a} is given twice; expected distinct latency budgets")
    return points


@dataclass(frozen=True)
class Sweep:
    """The MAC range of an NSGA-II sweep and its params budget (``None``: params not an objective)."""

    macs_min: float
    macs_max: float
    params_max: float | None = None


def quantity_label(value: float) -> str:
    """Short exact label of a quantity: 4.5e9 → ``4.5G``, 0.4e9 → ``0.4G``, 2e7 → ``20M``.

    The unit is the largest one the value reaches a tenth of; the number is the shortest decimal
    that reads back as the same float, so distinct budgets get distinct labels.
    """
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= 0.1 * scale:
            return np.format_float_positional(value / scale, trim="-") + unit
    return np.format_float_positional(value, trim="-")


def budget_points(cfg: Config, macs: Sequence[float], params: Sequence[float] | str | None = None) -> tuple[BudgetPoint, ...]:
    """The run's budget points, sorted by MACs.

    Args:
        cfg: the run configuration (its budget gives ρ0 and the params/MACs ratio).
        macs: MAC budgets.
        params: one params budget per MAC budget, ``"off"`` for none, or ``None`` to scale the
            config's params budget with MACs (see the module docstring).

    Returns:
        The points, ascending in MACs.

    Raises:
        ValueError: for duplicate budgets or a params list of the wrong length.
    """
    macs = [float(m) for m in macs]
    if isinstance(params, str):
        if params != "off":
            raise ValueError(f"--params: expected one value per --budget or 'off', got {params!r}")
        pairs = [(m, None) for m in macs]
    elif params is None:
        pairs = [(m, scaled_params(cfg, m)) for m in macs]
    else:
        if len(params) != len(macs):
            raise ValueError(f"--params: expected {len(macs)} values (one per --budget) or 'off', got {len(params)}")
        pairs = [(m, float(p)) for m, p in zip(macs, params)]
    points = tuple(BudgetPoint(m, p) for m, p in sorted(pairs, key=lambda mp_: mp_[0]))
    labels = [p.label for p in points]
    for a, b in zip(labels, labels[1:]):
        if a == b:
            raise ValueError(f"--budget: {a} is given twice; expected distinct MAC budgets")
    return points


def scaled_params(cfg: Config, macs: float) -> float | None:
    """The params budget that goes with a MAC budget by the config's params/MACs ratio."""
    b = cfg.budget
    if b.params is None:
        return None
    if b.macs is None:
        return float(b.params)
    return float(b.params) * macs / float(b.macs)


def budget_seed(seed: int, point: BudgetPoint | Sweep | str) -> int:
    """Seed of one point's search, derived from the run seed and the budget values only."""
    if isinstance(point, BudgetPoint):
        key = f"{point.macs!r}|{point.params!r}" + ("" if point.latency is None else f"|latency {point.latency!r}")
    elif isinstance(point, Sweep):
        key = f"sweep|{point.macs_min!r}|{point.macs_max!r}|{point.params_max!r}"
    else:
        key = str(point)
    digest = hashlib.sha256(f"deepmad-evo/pareto|{seed}|{key}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def search_settings(cfg: Config) -> SearchSettings:
    """The per-budget search effort of a config: the standalone search's, so both give one answer.

    A Pareto point and ``run.py search`` with the same template, budgets, seed and settings
    return the same genotype. The parallelism of a Pareto run goes across budgets, so each
    search runs its chains in its own process (``jobs=1``; the result never depends on ``jobs``).
    """
    return cfg.search_settings(jobs=1)


def point_budget(cfg: Config, macs: float | None, params: float | None, latency: float | None = None) -> Budget:
    b = cfg.budget
    return Budget(rho=b.rho, macs=macs, params=params, max_layers=b.max_layers, monotone=b.monotone,
                  latency=latency, latency_table=b.latency_table)



def record_point(genotype: Genotype, cfg: Config) -> dict:
    ev = evaluate(genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    rec = {"genotype": genotype.to_dict(), "text": genotype.to_text(), "objective": float(ev.objective),
           "macs": json_number(ev.macs), "params": json_number(ev.params), "rho": float(ev.rho), "layers": int(ev.layers)}
    model = cfg.budget.latency_model()
    if model is not None:
        from ..latency.table import LatencyTableError

        try:
            rec["latency"] = model.predict(genotype)
        except LatencyTableError:
            pass  # a published structure with an op the table lacks: no latency to show
    return rec




def check_budget(cfg: Config, space: SearchSpace, macs: float | None, params: float | None, field: str,
                 latency: float | None = None) -> None:
    """Fail fast, before any worker starts, when the smallest network of the space breaks a size budget."""
    problem = DeepMADProblem(space, point_budget(cfg, macs, params, latency), cfg.objective.alpha, cfg.objective.beta,
                             cfg.objective.convention)
    x = smallest_network(space)
    if latency is not None:
        from ..latency.table import format_time

        small = float(problem.latency(x[None])[0])
        if small > latency:
            raise InfeasibleBudgetError(f"--latency: {latency_label(latency)} is infeasible; the smallest network of "
                                        f"{cfg.name} has a predicted latency of {format_time(small)}")
    ev, _ = problem.evaluate_vectors(x[None])
    small_macs, small_params = float(ev.macs[0]), float(ev.params[0])
    if (macs is not None and small_macs > macs) or (params is not None and small_params > params):
        raise InfeasibleBudgetError(
            f"{field}: {'no' if macs is None else quantity_label(macs)} MACs"
            + ("" if params is None else f" / {quantity_label(params)} params")
            + f" is infeasible; the smallest network of {cfg.name} has {quantity_label(small_macs)} MACs and "
            f"{quantity_label(small_params)} params ({cfg.objective.convention} convention)"
        )


def _search_fraction(info: dict, local_search: bool) -> float | None:
    """Approximate completed fraction of one search from its progress dict (GA ≈ 85 % of the work)."""
    step, total = info.get("step"), info.get("total")
    if step is None or not total:
        return None
    done = min(1.0, (step + 1) / total)
    if info.get("phase") == "ga":
        return 0.85 * done if local_search else done
    if info.get("phase") == "polish":
        return 0.85 + 0.15 * done
    return None


def solve_budget(cfg: Config, point: BudgetPoint, seed: int, path: Path | None, report: Callback | None = None) -> dict:
    """Search one budget point and write its resume record.

    Args:
        cfg: the run configuration.
        point: the budget point.
        seed: the run seed, which is also the search's seed: the point is what the standalone
            search with this budget and seed returns.
        path: where the record goes (atomically); ``None`` writes nothing.
        report: called with ``{"event": "progress", "label", "fraction", "best_objective"}``.

    Returns:
        The record (JSON-ready dict).
    """
    settings = search_settings(cfg)
    label = point.label
    last = [-1.0]

    def callback(info):
        f = _search_fraction(info, settings.local_search)
        if report is None or f is None or f < last[0] + 0.01:
            return
        last[0] = f
        report({"event": "progress", "label": label, "fraction": f, "best_objective": info.get("best_objective")})

    search_seed = seed
    cpu0 = time.process_time()
    try:
        result = run_search(cfg.search_space(), point_budget(cfg, point.macs, point.params, point.latency),
                            alpha=cfg.objective.alpha, beta=cfg.objective.beta, convention=cfg.objective.convention,
                            settings=settings, seed=search_seed, callback=callback)
    except InfeasibleBudgetError as exc:
        raise InfeasibleBudgetError(f"--{'latency' if point.latency is not None else 'budget'} {label}: {exc}") from None
    record = {"format": RECORD_FORMAT, "config": cfg.to_dict(), "seed": seed, "search_seed": search_seed,
              "budget": point.record(cfg),
              **record_point(result.genotype, cfg), "feasible": bool(result.feasible),
              "evaluations": int(result.n_evals), "seconds": float(result.seconds),
              "cpu_seconds": time.process_time() - cpu0}
    if path is not None:
        atomic_write_text(path, dumps_json(record, indent=1) + "\n")
    return record


def monotone_points(points: Sequence[BudgetPoint], records: Sequence[dict]) -> list[tuple[dict, str]]:
    """For each point, the best searched result feasible under its budget, and the label of its search.

    A point keeps its own search's result unless another point's result fits its budget (MACs,
    params and predicted latency; ρ0 and monotonicity are shared) with a strictly higher objective.

    Args:
        points: the budget points.
        records: their search records, in the same order.

    Returns:
        ``[(record, source_label)]`` in the order of ``points``.
    """
    chosen = []
    for i, p in enumerate(points):
        best, source = records[i], p.label
        for q, r in zip(points, records):
            fits = (r["feasible"] and (p.macs is None or r["macs"] <= p.macs) and (p.params is None or r["params"] <= p.params)
                    and (p.latency is None or r["latency"] <= p.latency))
            if fits and r["objective"] > best["objective"]:
                best, source = r, q.label
        chosen.append((best, source))
    return chosen
