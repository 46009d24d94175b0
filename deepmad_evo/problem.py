"""The DeepMAD design problem as a pymoo ``Problem`` over the integer genotype vector.

F = −objective (pymoo minimises). G (≤ 0 feasible), every column normalised:
ρ/ρ0 − 1, MACs/B_macs − 1, params/B_params − 1, L/L_max − 1, latency/B_latency − 1 (the budgets
that are set; latency predicted by the table's ``latency.LatencyModel``) and the largest channel
decrease between consecutive stages over the channel range (guideline 3, when on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from .objective import DEFAULT_BETA, PopulationEvaluation, check_alpha, evaluate_population
from .space import SearchSpace


@dataclass(frozen=True)
class Budget:
    """Constraints of a search; ``None`` switches a budget off."""

    rho: float | None = 0.5
    macs: float | None = None
    params: float | None = None
    max_layers: int | None = None
    monotone: bool = True
    latency: float | None = None  # seconds, predicted from latency_table
    latency_table: str | None = None

    def __post_init__(self) -> None:
        for name in ("rho", "macs", "params", "max_layers", "latency"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                                  or not (v > 0 and np.isfinite(v))):
                raise ValueError(f"budget.{name}: expected a positive finite number or none, got {v!r}"[:200])
        if self.latency is not None and self.latency_table is None:
            raise ValueError("budget.latency: expected a latency table to predict it from (--latency-table TABLE), got none")

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the G columns, in order."""
        names = [n for n in ("rho", "macs", "params", "max_layers", "latency") if getattr(self, n) is not None]
        return tuple(names + (["monotone"] if self.monotone else []))

    def latency_model(self):
        """The ``latency.LatencyModel`` of ``latency_table`` (cached per process), or None."""
        if self.latency_table is None:
            return None
        from .latency.model import model_for

        return model_for(self.latency_table)


def constraint_values(ev: PopulationEvaluation, out: np.ndarray, budget: Budget, channel_range: float,
                      latency: np.ndarray | None = None) -> np.ndarray:
    """The normalised constraint matrix G (N, n_constr) of evaluated networks (``latency``: predicted seconds)."""
    cols = []
    if budget.rho is not None:
        cols.append(ev.rho / budget.rho - 1.0)
    if budget.macs is not None:
        cols.append(ev.macs / budget.macs - 1.0)
    if budget.params is not None:
        cols.append(ev.params / budget.params - 1.0)
    if budget.max_layers is not None:
        cols.append(ev.layers / budget.max_layers - 1.0)
    if budget.latency is not None:
        cols.append(latency / budget.latency - 1.0)
    if budget.monotone:
        drop = np.max(out[:, :-1] - out[:, 1:], axis=1, initial=0) if out.shape[1] > 1 else np.zeros(len(out))
        cols.append(drop / channel_range)
    return np.column_stack(cols).astype(float) if cols else np.zeros((len(out), 0))


class DeepMADProblem(Problem):
    """Maximise the DeepMAD objective of a search space's genotypes under a ``Budget``."""

    CHUNK = 16384

    def __init__(self, space: SearchSpace, budget: Budget, alpha=None, beta: float = DEFAULT_BETA,
                 convention: str = "torch") -> None:
        self.space, self.budget = space, budget
        self.alpha = check_alpha(alpha, space.template.num_segments)
        self.beta, self.convention = float(beta), convention
        self.n_evals = 0
        # Predicted seconds of integer vectors (``latency.model.SpaceLatency``), when a latency budget is set.
        self.latency = budget.latency_model().compile(space) if budget.latency is not None else None
        xl, xu = space.bounds
        super().__init__(n_var=space.n_var, n_obj=1, n_ieq_constr=len(budget.names), xl=xl, xu=xu, vtype=int)

    def evaluate_vectors(self, X: np.ndarray) -> tuple[PopulationEvaluation, np.ndarray]:
        """Evaluate integer vectors; returns the evaluation and the constraint matrix G."""
        X = np.asarray(X)
        if len(X) > self.CHUNK:
            # Cache-sized chunks are ~30 % faster than one huge pass.
            parts = [self.evaluate_vectors(X[i:i + self.CHUNK]) for i in range(0, len(X), self.CHUNK)]
            evs = [p[0] for p in parts]
            ev = PopulationEvaluation(**{f: np.concatenate([getattr(e, f) for e in evs])
                                         for f in PopulationEvaluation.__dataclass_fields__})
            return ev, np.concatenate([p[1] for p in parts])
        stem, out, btn, kernel, depth = self.space.decode(X)
        ev = evaluate_population(self.space.template, stem, out, btn, kernel, depth, self.alpha, self.beta,
                                 self.convention)
        self.n_evals += len(X)
        channel_range = float(self.space.channels[-1])
        latency = None if self.latency is None else self.latency(X)
        return ev, constraint_values(ev, out, self.budget, channel_range, latency)

    def _evaluate(self, X, out, *args, **kwargs):
        ev, G = self.evaluate_vectors(np.asarray(X))
        out["F"] = -ev.objective[:, None]
        out["G"] = G


class MonotoneRepair(Repair):
    """Round to integers and make stage channels non-decreasing (a running maximum) when ``monotone``.

    It reads the channel columns from the space it is given, not from the problem pymoo passes,
    so it also works when a problem wraps (or is wrapped around) a ``DeepMADProblem``.
    """

    def __init__(self, space: SearchSpace, monotone: bool = True) -> None:
        super().__init__()
        self.space, self.monotone = space, bool(monotone)

    def _do(self, problem, X, **kwargs):
        X = np.round(np.asarray(X)).astype(np.int64)
        return self.space.repair_monotone(X) if self.monotone else X
