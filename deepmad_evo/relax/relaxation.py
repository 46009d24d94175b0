"""The relaxed problem: real widths and depths, objective and constraints with exact gradients, SLSQP solves."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, NonlinearConstraint, minimize

from ..genotype import Genotype
from ..objective import DEFAULT_BETA, check_alpha, evaluate_population
from ..problem import Budget
from ..space import SearchSpace, Template
from ..units import se_width
from .dual import Dual

DEPTH_EPSILON = 1e-3
FEASIBILITY_TOLERANCE = 1e-6



def smooth_relu(x, tau: float):
    """C¹ lower bound of max(0, x): 0 for x ≤ 0, x for x ≥ τ, x²(2τ − x)/τ² between; (value, slope)."""
    t = np.clip(x, 0.0, tau)
    inner = t * t * (2 * tau - t) / tau**2
    value = np.where(x >= tau, x, inner)
    slope = np.where(x >= tau, 1.0, t * (4 * tau - 3 * t) / tau**2)
    return value, slope


@dataclass(frozen=True)
class SqueezeBound:
    """The relaxed SE squeeze width: a C¹ lower bound of ``units.se_width`` on the space's btn values.

    Discrete: se = max(1, round(btn/4) // 8)·8 ≥ max(floor, btn/4 − offset) on every admissible
    btn; relaxed: floor + smooth_relu(btn/4 − offset − floor, τ = 8).
    """

    offset: float
    floor: float
    tau: float = 8.0

    @classmethod
    def of(cls, btn_values) -> "SqueezeBound":
        btn_values = np.asarray(btn_values, dtype=np.int64)
        se = se_width(btn_values)
        bound = cls(float(np.max(btn_values / 4 - se)), float(np.min(se)))
        assert np.all(bound.value(btn_values.astype(float)) <= se + 1e-9), "relaxed SE width above the staircase"
        return bound

    def value(self, btn):
        return self.floor + smooth_relu(np.asarray(btn) / 4 - self.offset - self.floor, self.tau)[0]

    def __call__(self, btn: Dual) -> Dual:
        v, slope = smooth_relu(btn.val / 4 - self.offset - self.floor, self.tau)
        return Dual(self.floor + v, btn.grad * (slope / 4)[..., None])


def admissible_btn(space: SearchSpace) -> np.ndarray:
    """Every (out, btn) pair the space can produce, as rows of a (P, 2) int array."""
    out = np.asarray(space.channels, dtype=np.int64)
    e = np.asarray(space.expansions, dtype=float)
    m = space.multiple
    btn = np.maximum(m, np.floor(e[None, :] * out[:, None] / m + 0.5).astype(np.int64) * m)
    return np.column_stack([np.repeat(out, len(e)), btn.ravel()])


def smoothed_std(depth: np.ndarray, epsilon: float):
    """σ_ε = √(var(d) + ε²) − ε over the last axis and its gradient (same shape as ``depth``)."""
    S = depth.shape[-1]
    centred = depth - depth.mean(axis=-1, keepdims=True)
    root = np.sqrt((centred**2).mean(axis=-1, keepdims=True) + epsilon**2)
    return root[..., 0] - epsilon, centred / (S * root)


@dataclass(frozen=True)
class RelaxedValues:
    """Objective, normalised constraints (≤ 0 feasible) and their gradients at N points."""

    objective: np.ndarray  # (N,)
    objective_grad: np.ndarray  # (N, n)
    constraints: np.ndarray  # (N, m)
    constraints_jac: np.ndarray  # (N, m, n)
    entropy: np.ndarray
    weighted_depth_penalty: np.ndarray
    rho_prefix: np.ndarray  # (N, segments)
    macs: np.ndarray
    params: np.ndarray
    layers: np.ndarray


class Relaxation:
    """The continuous relaxation of one space and budget for fixed per-stage kernels.

    Args:
        space: the search space (its template, value ranges and btn rounding).
        budget: ρ0 and the MAC / parameter / layer budgets and the monotone switch.
        kernels: one kernel size per stage.
        alpha, beta, convention: as for ``objective.evaluate``.
        depth_epsilon: ε of the smoothed depth std.
    """

    def __init__(self, space: SearchSpace, budget: Budget, kernels: Sequence[int], alpha=None,
                 beta: float = DEFAULT_BETA, convention: str = "torch", depth_epsilon: float = DEPTH_EPSILON) -> None:
        S = space.num_stages
        kernels = tuple(int(k) for k in kernels)
        if len(kernels) != S:
            raise ValueError(f"kernels: expected {S} kernel sizes (one per stage), got {list(kernels)}")
        self.space, self.budget, self.kernels = space, budget, kernels
        self.template: Template = space.template
        self.alpha = check_alpha(alpha, self.template.num_segments)
        self.beta, self.convention, self.depth_epsilon = float(beta), convention, float(depth_epsilon)
        self.S, self.n_var = S, 1 + 3 * S
        self.i_out, self.i_btn, self.i_depth = (np.arange(S) + 1, np.arange(S) + 1 + S, np.arange(S) + 1 + 2 * S)
        pairs = admissible_btn(space)
        # Every discrete (c, btn) satisfies e_min·c − slack_lo ≤ btn ≤ e_max·c + slack_hi, the
        # slacks being the worst rounding of btn to the channel multiple over the whole grid.
        self.expansion_range = (float(space.expansions[0]), float(space.expansions[-1]))
        self.btn_slack = (float(np.max(self.expansion_range[0] * pairs[:, 0] - pairs[:, 1])),
                          float(np.max(pairs[:, 1] - self.expansion_range[1] * pairs[:, 0])))
        self.btn_values = np.unique(pairs[:, 1])  # every btn width the space can produce
        # Per expansion e of the grid, the same slacks for the pairs (c, btn(c, e)) alone: a discrete
        # btn with expansion ≤ e is ≤ e·c + slack_hi(e), one with expansion ≥ e is ≥ e·c − slack_lo(e)
        # (btn rounds monotonically in e); ``values(..., expansion=)`` bounds a node's expansions so.
        self.expansions = np.asarray(space.expansions, dtype=float)
        e_pairs = pairs[:, 1].reshape(len(space.channels), len(self.expansions))
        c_pairs = pairs[:, 0].reshape(e_pairs.shape).astype(float)
        self.expansion_slack = (np.max(self.expansions * c_pairs - e_pairs, axis=0),
                                np.max(e_pairs - self.expansions * c_pairs, axis=0))
        self.btn_table = e_pairs  # btn of channels[i] and expansions[k]: non-decreasing in i and in k
        self.squeeze = SqueezeBound.of(self.btn_values)
        lower = np.concatenate([[space.stem_channels[0]], np.full(S, space.channels[0]),
                                np.full(S, pairs[:, 1].min())]).astype(float)
        upper = np.concatenate([[space.stem_channels[-1]], np.full(S, space.channels[-1]),
                                np.full(S, pairs[:, 1].max())]).astype(float)
        self.lower = np.concatenate([np.log(lower), space.depth_min]).astype(float)
        self.upper = np.concatenate([np.log(upper), space.depth_max]).astype(float)
        sizes = [n for n in ("macs", "params", "max_layers") if getattr(budget, n) is not None]
        J = self.template.num_segments if budget.rho is not None else 0
        self.constraint_names = tuple([f"rho[{j}]" for j in range(J)] + sizes
                                      + [f"btn_min[{i}]" for i in range(S)] + [f"btn_max[{i}]" for i in range(S)])
        self.size_columns = slice(J, J + len(sizes))
        self._cache: tuple[bytes, RelaxedValues] | None = None

    # -- geometry ---------------------------------------------------------------------------

    def linear(self) -> LinearConstraint | None:
        """Monotone channels as rows ln c_{i+1} − ln c_i ≥ 0 (None when off or with one stage)."""
        if not self.budget.monotone or self.S < 2:
            return None
        A = np.zeros((self.S - 1, self.n_var))
        for i in range(self.S - 1):
            A[i, self.i_out[i + 1]], A[i, self.i_out[i]] = 1.0, -1.0
        return LinearConstraint(A, np.zeros(self.S - 1), np.full(self.S - 1, np.inf))

    def point(self, genotype: Genotype) -> np.ndarray:
        """The relaxation variables z of a genotype (its exact widths and depths)."""
        st = genotype.stages
        return np.concatenate([[math.log(genotype.stem.out)], np.log([s.out for s in st]),
                               np.log([s.btn for s in st]), [float(s.depth) for s in st]])

    def grids(self) -> list[np.ndarray | None]:
        """Per variable, the logs of its discrete values (stem, stage and btn widths); None for depths."""
        space = self.space
        logs = [np.log(np.unique(np.asarray(v, dtype=float))) for v in (space.stem_channels, space.channels, self.btn_values)]
        return [logs[0]] + [logs[1]] * self.S + [logs[2]] * self.S + [None] * self.S

    def widths(self, z: np.ndarray) -> dict:
        """Real widths and depths at z: stem, out, btn, expansion (btn/out), depth."""
        z = np.asarray(z, dtype=float)
        out, btn = np.exp(z[self.i_out]), np.exp(z[self.i_btn])
        return {"stem": float(np.exp(z[0])), "out": out.tolist(), "btn": btn.tolist(),
                "expansion": (btn / out).tolist(), "depth": z[self.i_depth].tolist(), "kernel": list(self.kernels)}

    # -- evaluation -------------------------------------------------------------------------

    def values(self, Z: np.ndarray, gradients: bool = True, expansion: tuple | None = None) -> RelaxedValues:
        """Objective and constraints at the rows of Z (N, n), through ``evaluate_population``.

        ``expansion``: (lowest, highest) index into the expansion grid per stage, shape (S,) or
        (N, S): the btn rows then bound the expansions of a branch-and-bound node (with the
        slacks of those grid values) instead of the whole grid's range.
        """
        Z = np.atleast_2d(np.asarray(Z, dtype=float))
        N, S = len(Z), self.S
        eye = np.eye(self.n_var)[:, : self.n_var if gradients else 0]
        e_stem, e_out, e_btn = np.exp(Z[:, 0]), np.exp(Z[:, self.i_out]), np.exp(Z[:, self.i_btn])
        stem = Dual(e_stem, e_stem[:, None] * eye[0])
        out = Dual(e_out, e_out[..., None] * eye[self.i_out])
        btn = Dual(e_btn, e_btn[..., None] * eye[self.i_btn], self.squeeze)
        depth = Dual(Z[:, self.i_depth], np.broadcast_to(eye[self.i_depth], (N, S, eye.shape[1])))
        kernel = np.broadcast_to(np.asarray(self.kernels), (N, S))
        ev = evaluate_population(self.template, stem, out, btn, kernel, depth, self.alpha, self.beta,
                                 self.convention)
        sigma, dsigma = smoothed_std(Z[:, self.i_depth], self.depth_epsilon)
        penalty = self.beta * np.exp(sigma)
        grad = ev.entropy.grad.copy()
        if gradients:
            grad[:, self.i_depth] -= penalty[:, None] * dsigma
        b = self.budget
        cons = [] if b.rho is None else [ev.rho_prefix / b.rho - 1.0]
        for name in ("macs", "params"):
            if getattr(b, name) is not None:
                cons.append(getattr(ev, name) / getattr(b, name) - 1.0)
        if b.max_layers is not None:
            cons.append(ev.layers / b.max_layers - 1.0)
        if expansion is None:
            (e_lo, e_hi), (s_lo, s_hi) = self.expansion_range, self.btn_slack
        else:
            k_lo, k_hi = (np.broadcast_to(np.asarray(k), (N, S)) for k in expansion)
            e_lo, e_hi = self.expansions[k_lo], self.expansions[k_hi]
            s_lo, s_hi = self.expansion_slack[0][k_lo], self.expansion_slack[1][k_hi]
        cons.append((out * e_lo - s_lo) / btn - 1.0)
        cons.append(btn / (out * e_hi + s_hi) - 1.0)
        G = _column_concat(cons)
        return RelaxedValues(ev.entropy.val - penalty, grad, G.val, G.grad, ev.entropy.val, penalty,
                             ev.rho_prefix.val, ev.macs.val, ev.params.val, ev.layers.val)

    def _at(self, z: np.ndarray, expansion: tuple | None = None) -> RelaxedValues:
        key = np.asarray(z, dtype=float).tobytes() + (b"" if expansion is None else np.asarray(expansion).tobytes())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.values(z[None], expansion=expansion))
        return self._cache[1]

    def violation(self, Z: np.ndarray, values: RelaxedValues | None = None, expansion: tuple | None = None) -> np.ndarray:
        """Largest violation of any constraint (normalised budgets, linear rows in log units, bounds).

        ``values``: ``self.values(Z)`` when the caller has it already; ``expansion`` as for ``values``.
        """
        Z = np.atleast_2d(Z)
        values = self.values(Z, gradients=False, expansion=expansion) if values is None else values
        parts = [values.constraints, self.lower - Z, Z - self.upper]
        lin = self.linear()
        if lin is not None:
            parts.append(lin.lb - Z @ lin.A.T)
        return np.max(np.concatenate([np.maximum(p, 0.0) for p in parts], axis=1), axis=1)

    # -- solving ----------------------------------------------------------------------------

    def solve(self, z0: np.ndarray, maxiter: int = 200, ftol: float = 1e-10, lower: np.ndarray | None = None,
              upper: np.ndarray | None = None, objective: Callable | None = None,
              max_evaluations: int | None = None, expansion: tuple | None = None) -> tuple[np.ndarray, dict]:
        """One SLSQP run from z0; returns the final point and a status record.

        Args:
            z0: start (clipped into the bounds).
            maxiter, ftol: SLSQP options.
            lower, upper: tighter variable bounds (e.g. fixed depths).
            objective: z -> (value, gradient) to minimise instead of −(relaxed objective).
            max_evaluations: stop (status −1) after this many objective evaluations; SLSQP's
                line search can spend hundreds of them on an infeasible problem.
            expansion: per-stage expansion index bounds, as for ``values``.
        """
        lower = self.lower if lower is None else np.maximum(lower, self.lower)
        upper = self.upper if upper is None else np.minimum(upper, self.upper)
        z0 = np.clip(np.asarray(z0, dtype=float), lower, upper)
        if objective is None:
            scale = max(1.0, abs(float(self._at(z0, expansion).objective[0])))

            def objective(z):
                v = self._at(z, expansion)
                return -v.objective[0] / scale, -v.objective_grad[0] / scale

        seen = [z0]

        def counted(z):
            if max_evaluations is not None and len(seen) > max_evaluations:
                raise _EvaluationLimit
            seen.append(np.array(z))
            return objective(z)

        nonlinear = NonlinearConstraint(lambda z: self._at(z, expansion).constraints[0], -np.inf, 0.0,
                                        jac=lambda z: self._at(z, expansion).constraints_jac[0])
        t0 = time.perf_counter()
        constraints = [nonlinear] + [c for c in [self.linear()] if c is not None]
        try:
            res = minimize(counted, z0, jac=True, method="SLSQP", bounds=Bounds(lower, upper),
                           constraints=constraints, options={"maxiter": maxiter, "ftol": ftol})
        except _EvaluationLimit:
            info = {"status": -1, "message": f"Evaluation limit ({max_evaluations}) reached", "iterations": -1,
                    "evaluations": len(seen) - 1}
            return np.clip(seen[-1], lower, upper), {**info, "seconds": time.perf_counter() - t0}
        z = np.clip(res.x, lower, upper)
        return z, {"status": int(res.status), "message": str(res.message), "iterations": int(res.nit),
                   "evaluations": int(res.nfev), "seconds": time.perf_counter() - t0}

    def sample(self, n: int, rng: np.random.Generator, batch: int = 256, rounds: int = 4,
               steps: int = 20) -> np.ndarray:
        """Up to ``n`` random feasible points (fewer only when SLSQP cannot reach feasibility).

        Random points (sorted channels, btn/c drawn in the expansion range, depths skewed towards
        shallow as ρ ≤ ρ0 prefers) are pulled towards the smallest network by the largest λ that
        keeps them within the size budgets (costs grow along that segment); those that also meet
        ρ ≤ ρ0 are kept. If a few rounds of ``batch`` points leave fewer than ``n``, the
        remaining points are projected onto the feasible set by SLSQP (least scaled squares).
        """
        lo, hi = self.lower, self.upper
        S = self.S
        r_lo, r_hi = np.log(self.expansion_range)
        anchor = lo.copy()
        anchor[self.i_btn] = np.clip(np.log(np.maximum(self.expansion_range[0] * np.exp(lo[self.i_out])
                                                       - self.btn_slack[0], 1.0)), lo[self.i_btn], hi[self.i_btn])
        kept, rest = [], []
        for _ in range(rounds if n else 0):
            Z = lo + rng.random((batch, self.n_var)) * (hi - lo)
            if self.budget.monotone:
                Z[:, self.i_out] = np.sort(Z[:, self.i_out], axis=1)
            Z[:, self.i_btn] = np.clip(Z[:, self.i_out] + r_lo + rng.random((batch, S)) * (r_hi - r_lo),
                                       lo[self.i_btn], hi[self.i_btn])
            Z[:, self.i_depth] = lo[self.i_depth] + rng.random((batch, S)) ** 2 * (hi - lo)[self.i_depth]
            a, b = np.zeros(batch), np.ones(batch)
            for _ in range(steps):
                lam = (a + b) / 2
                G = self.values(anchor + lam[:, None] * (Z - anchor), gradients=False).constraints
                ok = np.all(G[:, self.size_columns] <= 0, axis=1)
                a, b = np.where(ok, lam, a), np.where(ok, b, lam)
            Z = anchor + a[:, None] * (Z - anchor)
            ok = self.violation(Z) <= 0
            kept += list(Z[ok])
            rest += list(Z[~ok])
            if len(kept) >= n:
                return np.array(kept[:n])
        scale = (hi - lo) ** 2
        for z in rest[: n - len(kept)]:
            def distance(y, target=z):
                return float(np.sum((y - target) ** 2 / scale)), 2 * (y - target) / scale

            z, _ = self.solve(z, maxiter=100, objective=distance)
            if self.violation(z)[0] <= FEASIBILITY_TOLERANCE:
                kept.append(z)
        return np.array(kept).reshape(-1, self.n_var)


class _EvaluationLimit(Exception):
    """Raised inside SLSQP's callbacks to stop a run at its evaluation budget."""


def _column_concat(blocks: list[Dual]) -> Dual:
    """Concatenate (N, k) and (N,) duals into one (N, m) dual."""
    vals = [b.val if b.ndim == 2 else b.val[:, None] for b in blocks]
    grads = [b.grad if b.ndim == 2 else b.grad[:, None, :] for b in blocks]
    return Dual(np.concatenate(vals, axis=1), np.concatenate(grads, axis=1))
