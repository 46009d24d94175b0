"""Continuous relaxation of the DeepMAD problem, solved by SLSQP with exact gradients, to cross-check the GA.

The relaxed problem keeps the template and the per-stage kernels of a discrete solution and lets
widths and depths be real. Its variables are

====== =============================================================
z      [ln c_stem, ln c_1..c_S, ln btn_1..btn_S, d_1..d_S] (n = 1 + 3·S)
c_i    stage output channels; monotone channels are linear in ln c
btn_i  bottleneck widths, e_min·c − slack_lo ≤ btn ≤ e_max·c + slack_hi: the hull of the
       space's (c, btn) pairs, btn rounding to the channel multiple included
d_i    real depths in the space's [min, max]; a stage of depth d is its first block plus
       d − 1 repeats, so every sum over blocks is linear in d
σ_ε    √(var(d) + ε²) − ε, the smoothed population std of the depths (σ − ε ≤ σ_ε ≤ σ)
====== =============================================================

Objective and constraints are computed by the discrete code path itself:
``objective.evaluate_population`` runs on ``Dual`` arrays (forward-mode dual numbers), so the
entropy, every prefix ρ_j, the MACs, params and layers come with exact gradients. Three spots are
relaxed on purpose, each so that every discrete feasible genotype stays feasible with an
objective no lower than its own (the relaxed optimum is an *upper bound* for the fixed kernels,
up to the caveat that SLSQP is a local solver):

- the SE squeeze width (a rint/floor staircase of btn) is replaced by a C¹ lower bound that
  equals the staircase's affine lower envelope btn/4 − δ (δ = 6 for multiples of 8) for large
  btn and its floor (8) for small btn; relaxed SE costs are therefore ≤ the discrete ones by at
  most δ squeeze channels per block. (An interpolation exact at every admissible btn, C¹ steps
  in between, tightens the presets' bounds by only 0.02–0.09 % but makes the relaxation
  multimodal: SLSQP starts then disagree by up to 0.5 %. The affine bound keeps them agreeing.)
- the average-pooled identity residual of a stride-2 mbconv block with c_in = out (tinynas
  MACs c_in·r², a measure-zero event for real widths) is dropped: relaxed MACs ≤ discrete;
- the depth std is smoothed to σ_ε ≤ σ, so the relaxed penalty β·exp(σ_ε) ≤ β·exp(σ)
  (it differs by at most β·exp(σ)·ε).

The optimum found by SLSQP (multi-start: the GA's point and random feasible points) is rounded
back to the space (every floor/ceil choice of the most fractional variables, a violation
descent when none is feasible) and polished by the GA's integer local search. The gap
(relaxed − GA)/relaxed is split by one more solve with the depths held at the GA's integers:
what real-valued depths buy versus what better widths could buy. Optionally a branch and bound
over the depths (``depth_branch_and_bound``) bounds the problem with integral depths.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, NonlinearConstraint, minimize

from .genotype import Genotype
from .objective import DEFAULT_BETA, Evaluation, check_alpha, evaluate, evaluate_population
from .problem import Budget, DeepMADProblem
from .search import SearchResult, local_search, neighbourhood
from .space import SearchSpace, Template
from .units import se_width

DEPTH_EPSILON = 1e-3
FEASIBILITY_TOLERANCE = 1e-6
GAP_TOLERANCE = 0.01

Callback = Callable[[dict], None]


# --------------------------------------------------------------------------------------------
# Forward-mode dual numbers: just enough numpy for evaluate_population.


class Dual:
    """An array of values with their gradients along a trailing axis (forward-mode AD).

    ``val`` has shape V, ``grad`` shape V + (n,). Arithmetic, ``np.log``/``np.exp``, indexing,
    ``np.broadcast_to``/``np.column_stack``/``np.cumsum``/``np.zeros_like`` and ``sum``/``max`` propagate exact
    derivatives; any other numpy function raises ``TypeError`` rather than silently dropping
    them. ``np.asarray`` yields the values only (the population evaluator reads the batch size
    and the depth std that way; the relaxation differentiates the std itself).

    Equality between duals is always false: real widths never coincide, so the c_in = out
    residual of an mbconv block never triggers (see the module docstring).
    """

    __slots__ = ("val", "grad", "squeeze")

    def __init__(self, val, grad, squeeze: Callable | None = None) -> None:
        self.val = np.asarray(val, dtype=float)
        self.grad = np.asarray(grad, dtype=float)
        self.squeeze = squeeze  # bottleneck widths carry the relaxed SE squeeze width

    @property
    def shape(self) -> tuple[int, ...]:
        return self.val.shape

    @property
    def ndim(self) -> int:
        return self.val.ndim

    def __len__(self) -> int:
        return len(self.val)

    def __repr__(self) -> str:
        return f"Dual(val={self.val!r}, grad.shape={self.grad.shape})"

    def __array__(self, dtype=None, copy=None):
        return self.val if dtype is None else self.val.astype(dtype)

    def __getitem__(self, key) -> "Dual":
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > self.ndim or any(k is Ellipsis or k is None for k in key):
            raise TypeError(f"Dual: unsupported index {key!r}")
        return Dual(self.val[key], self.grad[key], self.squeeze)

    def se_width(self) -> "Dual":
        """The relaxed SE squeeze width (``units.se_width`` asks a dual for it)."""
        if self.squeeze is None:
            raise TypeError("Dual.se_width: this value is not a relaxed bottleneck width")
        return self.squeeze(self)

    def sum(self, axis: int) -> "Dual":
        axis = axis % self.ndim
        return Dual(self.val.sum(axis=axis), self.grad.sum(axis=axis))

    def max(self, axis: int) -> "Dual":
        axis = axis % self.ndim
        i = np.expand_dims(np.argmax(self.val, axis=axis), axis)
        return Dual(np.take_along_axis(self.val, i, axis).squeeze(axis),
                    np.take_along_axis(self.grad, i[..., None], axis).squeeze(axis))

    def __eq__(self, other):
        return np.zeros(np.broadcast_shapes(self.shape, _parts(other)[0].shape), dtype=bool)

    __hash__ = None

    def __add__(self, other):
        return _binary(np.add, self, other)

    def __radd__(self, other):
        return _binary(np.add, other, self)

    def __sub__(self, other):
        return _binary(np.subtract, self, other)

    def __rsub__(self, other):
        return _binary(np.subtract, other, self)

    def __mul__(self, other):
        return _binary(np.multiply, self, other)

    def __rmul__(self, other):
        return _binary(np.multiply, other, self)

    def __truediv__(self, other):
        return _binary(np.true_divide, self, other)

    def __rtruediv__(self, other):
        return _binary(np.true_divide, other, self)

    def __neg__(self):
        return Dual(-self.val, -self.grad)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            return NotImplemented
        if ufunc in (np.add, np.subtract, np.multiply, np.true_divide):
            return _binary(ufunc, *inputs)
        if ufunc is np.equal:
            return Dual.__eq__(*inputs) if isinstance(inputs[0], Dual) else Dual.__eq__(inputs[1], inputs[0])
        (x,) = inputs
        if ufunc is np.negative:
            return -x
        if ufunc is np.log:
            return Dual(np.log(x.val), x.grad / x.val[..., None])
        if ufunc is np.exp:
            e = np.exp(x.val)
            return Dual(e, x.grad * e[..., None])
        raise TypeError(f"Dual: numpy ufunc {ufunc.__name__} has no derivative here")

    def __array_function__(self, func, types, args, kwargs):
        if func is np.broadcast_to:
            return _broadcast_to(*args, **kwargs)
        if func is np.column_stack:
            return _column_stack(*args, **kwargs)
        if func is np.cumsum:
            return _cumsum(*args, **kwargs)
        if func is np.zeros_like:
            return np.zeros_like(args[0].val)
        raise TypeError(f"Dual: numpy function {func.__name__} has no derivative here")


def _parts(x):
    """(values, gradients or None) of a dual or a plain operand."""
    if isinstance(x, Dual):
        return x.val, x.grad
    return np.asarray(x), None


def _make(val, grad) -> Dual:
    """A dual from arrays already of the right dtype and shapes (the hot path skips validation)."""
    d = object.__new__(Dual)
    d.val, d.grad, d.squeeze = val, grad, None
    return d


_SCALARS = (int, float, bool, np.number, np.bool_)


def _binary(ufunc, a, b) -> Dual:
    """a ∘ b for ∘ in + − × ÷ with at least one dual operand; plain scalars take a fast path."""
    if isinstance(b, _SCALARS):
        if ufunc is np.add or ufunc is np.subtract:
            return _make(ufunc(a.val, b), a.grad)
        return _make(ufunc(a.val, b), ufunc(a.grad, b))
    if isinstance(a, _SCALARS):
        if ufunc is np.add:
            return _make(a + b.val, b.grad)
        if ufunc is np.subtract:
            return _make(a - b.val, -b.grad)
        if ufunc is np.multiply:
            return _make(a * b.val, a * b.grad)
        v = a / b.val
        return _make(v, b.grad * (-v / b.val)[..., None])
    av, ag = _parts(a)
    bv, bg = _parts(b)
    v = ufunc(av, bv)
    if ufunc is np.add or ufunc is np.subtract:
        parts = [ag, None if bg is None else (bg if ufunc is np.add else -bg)]
    elif ufunc is np.multiply:
        parts = [None if ag is None else ag * np.asarray(bv, dtype=float)[..., None],
                 None if bg is None else bg * np.asarray(av, dtype=float)[..., None]]
    else:  # true_divide
        parts = [None if ag is None else ag / np.asarray(bv, dtype=float)[..., None],
                 None if bg is None else -bg * (np.asarray(v, dtype=float) / bv)[..., None]]
    parts = [p for p in parts if p is not None]
    g = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    v = np.asarray(v, dtype=float)
    if g.shape[:-1] != v.shape:
        g = np.broadcast_to(g, v.shape + g.shape[-1:])
    return _make(v, g)


def _broadcast_to(array, shape, subok=False) -> Dual:
    shape = tuple(np.atleast_1d(shape))
    return Dual(np.broadcast_to(array.val, shape), np.broadcast_to(array.grad, shape + array.grad.shape[-1:]))


def _column_stack(tup) -> Dual:
    n = next(x.grad.shape[-1] for x in tup if isinstance(x, Dual))
    vals, grads = [], []
    for x in tup:
        v, g = _parts(x)
        if v.ndim != 1:
            raise TypeError("Dual: column_stack supports 1-D columns only")
        vals.append(v)
        grads.append(np.zeros(v.shape + (n,)) if g is None else g)
    return Dual(np.column_stack(vals), np.stack(grads, axis=1))


def _cumsum(a, axis) -> Dual:
    axis = axis % a.ndim
    return Dual(np.cumsum(a.val, axis=axis), np.cumsum(a.grad, axis=axis))


# --------------------------------------------------------------------------------------------
# The relaxed problem.


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
    depth_penalty: np.ndarray
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
        self.squeeze = SqueezeBound.of(np.unique(pairs[:, 1]))
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

    def widths(self, z: np.ndarray) -> dict:
        """Real widths and depths at z: stem, out, btn, expansion (btn/out), depth."""
        z = np.asarray(z, dtype=float)
        out, btn = np.exp(z[self.i_out]), np.exp(z[self.i_btn])
        return {"stem": float(np.exp(z[0])), "out": out.tolist(), "btn": btn.tolist(),
                "expansion": (btn / out).tolist(), "depth": z[self.i_depth].tolist(), "kernel": list(self.kernels)}

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, Z: np.ndarray, gradients: bool = True) -> RelaxedValues:
        """Objective and constraints at the rows of Z (N, n), through ``evaluate_population``."""
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
        (e_lo, e_hi), (s_lo, s_hi) = self.expansion_range, self.btn_slack
        cons.append((out * e_lo - s_lo) / btn - 1.0)
        cons.append(btn / (out * e_hi + s_hi) - 1.0)
        G = _column_concat(cons)
        return RelaxedValues(ev.entropy.val - penalty, grad, G.val, G.grad, ev.entropy.val, penalty,
                             ev.rho_prefix.val, ev.macs.val, ev.params.val, ev.layers.val)

    def _at(self, z: np.ndarray) -> RelaxedValues:
        key = np.asarray(z, dtype=float).tobytes()
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.evaluate(z[None]))
        return self._cache[1]

    def violation(self, Z: np.ndarray) -> np.ndarray:
        """Largest violation of any constraint (normalised budgets, linear rows in log units, bounds)."""
        Z = np.atleast_2d(Z)
        parts = [self.evaluate(Z, gradients=False).constraints, self.lower - Z, Z - self.upper]
        lin = self.linear()
        if lin is not None:
            parts.append(lin.lb - Z @ lin.A.T)
        return np.max(np.concatenate([np.maximum(p, 0.0) for p in parts], axis=1), axis=1)

    # -- solving ----------------------------------------------------------------------------

    def solve(self, z0: np.ndarray, maxiter: int = 200, ftol: float = 1e-10, lower: np.ndarray | None = None,
              upper: np.ndarray | None = None, objective: Callable | None = None,
              max_evaluations: int | None = None) -> tuple[np.ndarray, dict]:
        """One SLSQP run from z0; returns the final point and a status record.

        Args:
            z0: start (clipped into the bounds).
            maxiter, ftol: SLSQP options.
            lower, upper: tighter variable bounds (e.g. fixed depths).
            objective: z -> (value, gradient) to minimise instead of −(relaxed objective).
            max_evaluations: stop (status −1) after this many objective evaluations; SLSQP's
                line search can spend hundreds of them on an infeasible problem.
        """
        lower = self.lower if lower is None else np.maximum(lower, self.lower)
        upper = self.upper if upper is None else np.minimum(upper, self.upper)
        z0 = np.clip(np.asarray(z0, dtype=float), lower, upper)
        if objective is None:
            scale = max(1.0, abs(float(self._at(z0).objective[0])))

            def objective(z):
                v = self._at(z)
                return -v.objective[0] / scale, -v.objective_grad[0] / scale

        seen = [z0]

        def counted(z):
            if max_evaluations is not None and len(seen) > max_evaluations:
                raise _EvaluationLimit
            seen.append(np.array(z))
            return objective(z)

        nonlinear = NonlinearConstraint(lambda z: self._at(z).constraints[0], -np.inf, 0.0,
                                        jac=lambda z: self._at(z).constraints_jac[0])
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
                G = self.evaluate(anchor + lam[:, None] * (Z - anchor), gradients=False).constraints
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


# --------------------------------------------------------------------------------------------
# Cross-check: relax, solve from several starts, round back, compare with the GA.


@dataclass(frozen=True)
class StartReport:
    """One SLSQP run: where it started and how it ended."""

    origin: str  # "ga", "random[i]", "ga-depths" (depths fixed), "depths[...]" (depth rounding)
    kernels: tuple[int, ...]
    start_objective: float
    start_violation: float
    objective: float
    violation: float
    feasible: bool
    status: int
    message: str
    iterations: int
    evaluations: int
    seconds: float

    @property
    def converged(self) -> bool:
        return self.status == 0

    def to_dict(self) -> dict:
        return {"origin": self.origin, "kernels": list(self.kernels), "status": self.status, "message": self.message,
                "feasible": self.feasible, "objective": _num(self.objective), "violation": self.violation,
                "start_objective": _num(self.start_objective), "start_violation": self.start_violation,
                "iterations": self.iterations, "seconds": self.seconds}


@dataclass(frozen=True)
class CrossCheck:
    """The GA's solution next to the relaxed optimum and its rounding back to the space.

    ``gap`` = (relaxed − GA) / relaxed splits into ``depth_gap`` = (relaxed − fixed) / relaxed
    and ``width_gap`` = (fixed − GA) / relaxed, where *fixed* is the relaxed optimum with the
    depths held at the GA's integers: the first is what real-valued depths buy, the second what
    better widths could still buy at the GA's depths.
    """

    ga_genotype: Genotype
    ga_objective: float
    ga_feasible: bool
    relaxed_objective: float  # nan when no start ended feasible
    relaxed_point: dict | None  # real widths and depths (Relaxation.widths)
    relaxed_costs: dict | None  # macs, params, rho, layers at the relaxed optimum
    kernels: tuple[int, ...]
    depth_fixed_objective: float  # relaxed optimum with the GA's depths (nan if that solve failed)
    depth_fixed_point: dict | None
    depth_bound: dict | None  # integer-depth branch and bound (``depth_branch_and_bound``), if run
    rounded_genotype: Genotype | None
    rounded_objective: float  # after rounding, repair and a short discrete polish
    repaired_objective: float  # after rounding and repair, before the polish
    gap: float
    depth_gap: float
    width_gap: float
    tolerance: float
    solver_seconds: float
    seconds: float
    starts: tuple[StartReport, ...]
    warnings: tuple[str, ...]
    convention: str
    budget: Budget = field(repr=False)
    ga_evaluation: Evaluation | None = field(default=None, repr=False)
    rounded_evaluation: Evaluation | None = field(default=None, repr=False)

    @property
    def improved(self) -> bool:
        """The rounded relaxation is feasible and beats the GA's (feasible) genotype."""
        return (self.rounded_genotype is not None and self.ga_feasible
                and self.rounded_objective > self.ga_objective + 1e-9 * abs(self.ga_objective))

    @property
    def best_genotype(self) -> Genotype:
        return self.rounded_genotype if self.improved else self.ga_genotype

    def to_dict(self) -> dict:
        """JSON-ready record (``run.json["cross_check"]``)."""
        return {
            "ga_objective": _num(self.ga_objective), "relaxed_objective": _num(self.relaxed_objective),
            "rounded_objective": _num(self.rounded_objective), "repaired_objective": _num(self.repaired_objective),
            "gap": _num(self.gap), "depth_gap": _num(self.depth_gap), "width_gap": _num(self.width_gap),
            "depth_fixed_objective": _num(self.depth_fixed_objective), "tolerance": self.tolerance,
            "solver_seconds": self.solver_seconds, "seconds": self.seconds, "improved": self.improved,
            "ga_feasible": self.ga_feasible, "kernels": list(self.kernels), "relaxed_point": self.relaxed_point,
            "relaxed_costs": self.relaxed_costs, "depth_fixed_point": self.depth_fixed_point,
            "depth_bound": self.depth_bound,
            "rounded_genotype": None if self.rounded_genotype is None else self.rounded_genotype.to_text(),
            "starts": [r.to_dict() for r in self.starts], "warnings": list(self.warnings),
            "convention": self.convention,
        }


def _num(v):
    return None if v is None or not np.isfinite(v) else float(v)


def cross_check(source: SearchResult | Genotype, space: SearchSpace, budget: Budget | None = None, *,
                alpha=None, beta: float = DEFAULT_BETA, convention: str | None = None, seed: int = 0,
                random_starts: int = 3, kernels: str = "fixed", depth_nodes: int = 0, bound_gap: float = 0.0,
                maxiter: int = 200,
                polish_iterations: int = 100, polish_starts: int = 3, tolerance: float = GAP_TOLERANCE,
                depth_epsilon: float = DEPTH_EPSILON, callback: Callback | None = None) -> CrossCheck:
    """Cross-check a discrete solution against the continuous relaxation of its problem.

    Args:
        source: the GA's ``SearchResult`` (its budget and convention are used when not given) or
            any genotype of the space's template.
        space: the search space (template, ranges, btn rounding).
        budget: the constraints; required when ``source`` is a genotype.
        alpha, beta, convention: the objective's weights and the cost convention.
        seed: seeds the random starts.
        random_starts: random feasible starts besides the GA's solution.
        kernels: ``fixed`` keeps the GA's per-stage kernels; ``each`` also solves, from the GA's
            widths, every other per-stage kernel combination of the space (|kernels|^S solves)
            and bounds over all of them.
        depth_nodes: when > 0, also bound the problem with integral depths by a branch and
            bound over the depths of at most this many SLSQP nodes (``depth_branch_and_bound``)
            and round every leaf it reaches (each rounding raises the incumbent that prunes).
        bound_gap: relative-gap stop of that branch and bound: nodes within this fraction of the
            incumbent are pruned (the reported bound then includes incumbent·(1 + bound_gap)).
        maxiter: SLSQP iteration limit per start.
        polish_iterations: best-improvement steps of the discrete polish after rounding (0: none).
        polish_starts: how many of the best distinct roundings are polished.
        tolerance: a gap above this is flagged in ``warnings``.
        depth_epsilon: ε of the smoothed depth std.
        callback: called with a progress dict after each SLSQP run.

    Returns:
        A ``CrossCheck``; solver failures and infeasible starts are recorded there, never dropped.
    """
    t0 = time.perf_counter()
    report = callback or (lambda info: None)
    if isinstance(source, SearchResult):
        genotype, budget = source.genotype, budget or source.budget
        convention = convention or source.convention
    else:
        genotype = source
        if budget is None:
            raise ValueError("budget: required when cross-checking a genotype (not a SearchResult)")
    convention = convention or "torch"
    if kernels not in ("fixed", "each"):
        raise ValueError(f"kernels: expected 'fixed' or 'each', got {kernels!r}")
    if Template.of(genotype) != space.template:
        raise ValueError("genotype: its template (blocks, strides, head, stem, image size) differs from the space's")
    alpha = check_alpha(alpha, space.template.num_segments)
    problem = DeepMADProblem(space, budget, alpha, beta, convention)
    ga_evaluation = evaluate(genotype, alpha, beta, convention)
    ga_objective = float(ga_evaluation.objective)
    violated = _violated(problem, genotype)
    ga_feasible = not violated
    warnings: list[str] = []
    if violated:
        warnings.append("the GA's genotype breaks the budget (" + violated + ")")

    ga_kernels = tuple(st.k for st in genotype.stages)
    rng = np.random.default_rng(seed)
    runs: list[tuple[StartReport, np.ndarray]] = []

    def run(relax, origin, z0, **kw):
        kw.setdefault("maxiter", maxiter)
        runs.append(_run_start(relax, origin, z0, **kw))
        r = runs[-1][0]
        report({"phase": "relax", "done": len(runs), "origin": origin, "kernels": relax.kernels,
                "objective": r.objective, "feasible": r.feasible, "status": r.message})
        return runs[-1]

    relax = Relaxation(space, budget, ga_kernels, alpha, beta, convention, depth_epsilon)
    z_ga = relax.point(genotype)
    bound_runs = [run(relax, "ga", z_ga)]
    found = relax.sample(random_starts, rng) if random_starts else np.zeros((0, relax.n_var))
    if len(found) < random_starts:
        warnings.append(f"only {len(found)} of {random_starts} random feasible starts were found")
    bound_runs += [run(relax, f"random[{i}]", z) for i, z in enumerate(found)]
    relaxations = {ga_kernels: relax}
    if kernels == "each":
        for ks in itertools.product(space.kernels, repeat=space.num_stages):
            if ks != ga_kernels:
                relaxations[ks] = Relaxation(space, budget, ks, alpha, beta, convention, depth_epsilon)
                bound_runs.append(run(relaxations[ks], "ga", z_ga))

    # The relaxed optimum with the GA's (integral) depths splits the gap into depth and width parts.
    fixed_lo, fixed_hi = relax.lower.copy(), relax.upper.copy()
    fixed_lo[relax.i_depth] = fixed_hi[relax.i_depth] = np.clip(z_ga[relax.i_depth], relax.lower[relax.i_depth],
                                                                relax.upper[relax.i_depth])
    fixed_rep, z_fixed = run(relax, "ga-depths", z_ga, lower=fixed_lo, upper=fixed_hi)

    for r, _ in runs:
        if r.start_violation > FEASIBILITY_TOLERANCE and r.origin in ("ga", "ga-depths"):
            warnings.append(f"start {r.origin} {_kernel_text(r.kernels)} began infeasible "
                            f"(violation {r.start_violation:.2g})")
        if not r.feasible:
            warnings.append(f"start {r.origin} {_kernel_text(r.kernels)} ended infeasible "
                            f"(violation {r.violation:.2g}): {r.message}")
        elif not r.converged:
            warnings.append(f"start {r.origin} {_kernel_text(r.kernels)} did not converge: {r.message}")

    feasible_runs = [x for x in bound_runs if x[0].feasible]
    relaxed_objective = rounded_objective = repaired_objective = float("nan")
    relaxed_point = relaxed_costs = depth_bound = None
    rounded_x = None
    best_kernels = ga_kernels
    depth_fixed_objective = fixed_rep.objective if fixed_rep.feasible else float("nan")
    sources = [(relax, z_fixed)] if fixed_rep.feasible else []
    if not feasible_runs:
        warnings.append("no SLSQP start ended feasible: no relaxed bound")
    else:
        best, z = max(feasible_runs, key=lambda x: x[0].objective)
        best_relax = relaxations[best.kernels]
        relaxed_objective, best_kernels = best.objective, best.kernels
        relaxed_point = best_relax.widths(z)
        v = best_relax.evaluate(z[None], gradients=False)
        relaxed_costs = {"macs": float(v.macs[0]), "params": float(v.params[0]),
                         "rho": float(v.rho_prefix[0].max()), "layers": float(v.layers[0])}
        sources.insert(0, (best_relax, z))
    if sources:
        rounded_x, repaired_objective = _round_and_polish(problem, sources, polish_iterations, polish_starts, seed)
        if rounded_x is None:
            warnings.append("no rounding of the relaxed optimum could be repaired to a feasible genotype")
    solver_seconds = sum(r.seconds for r, _ in runs)
    if depth_nodes and feasible_runs:
        found = [ga_objective] if ga_feasible else []
        if rounded_x is not None:
            found.append(_objective(problem, rounded_x))
        incumbent = max(found, default=-np.inf)
        leaf_best: list = []

        def round_leaf(z_leaf):
            # Round every leaf as it is found: a better incumbent prunes more of the tree.
            x_leaf, f_leaf = _round_and_polish(problem, [(best_relax, z_leaf)], polish_iterations, polish_starts,
                                               seed)
            if x_leaf is None:
                return -np.inf
            f = _objective(problem, x_leaf)
            if not leaf_best or f > leaf_best[0][0]:
                leaf_best[:] = [(f, x_leaf, f_leaf)]
            return f

        depth_bound, _ = depth_branch_and_bound(best_relax, z, incumbent, depth_nodes, callback=report,
                                                leaf=round_leaf, relative_gap=bound_gap)
        solver_seconds += depth_bound["seconds"]
        if depth_bound["pruned_infeasible"]:
            warnings.append(f"depth bound: {depth_bound['pruned_infeasible']} nodes ended infeasible in SLSQP and "
                            "were pruned (not certified)")
        if leaf_best and (rounded_x is None or leaf_best[0][0] > _objective(problem, rounded_x)):
            _, rounded_x, repaired_objective = leaf_best[0]
    rounded_g = rounded_evaluation = None
    if rounded_x is not None:
        rounded_g = space.genotype(rounded_x)
        rounded_evaluation = evaluate(rounded_g, alpha, beta, convention)
        rounded_objective = float(rounded_evaluation.objective)
    if depth_bound is not None:
        best_discrete = max(rounded_objective if rounded_x is not None else -np.inf,
                            ga_objective if ga_feasible else -np.inf)
        if np.isfinite(best_discrete):
            depth_bound["best_discrete"] = best_discrete
            depth_bound["gap"] = (depth_bound["bound"] - best_discrete) / depth_bound["bound"]

    gap = depth_gap = width_gap = float("nan")
    if np.isfinite(relaxed_objective):
        gap = (relaxed_objective - ga_objective) / relaxed_objective
        if np.isfinite(depth_fixed_objective):
            depth_gap = (relaxed_objective - depth_fixed_objective) / relaxed_objective
            width_gap = (depth_fixed_objective - ga_objective) / relaxed_objective
        if gap < -1e-9:
            warnings.append(f"the relaxed optimum {relaxed_objective:.6g} is below the GA's {ga_objective:.6g}: "
                            "SLSQP stopped at a worse local optimum (the GA's point is relaxed-feasible)")
        elif gap > tolerance:
            warnings.append(f"gap {gap:.2%} exceeds the tolerance {tolerance:.2%}"
                            + (f" (depths {depth_gap:.2%}, widths {width_gap:.2%})" if np.isfinite(depth_gap) else ""))
    result = CrossCheck(genotype, ga_objective, ga_feasible, relaxed_objective, relaxed_point, relaxed_costs,
                        best_kernels, depth_fixed_objective, relax.widths(z_fixed) if fixed_rep.feasible else None,
                        depth_bound, rounded_g, rounded_objective, repaired_objective, gap, depth_gap, width_gap,
                        tolerance, solver_seconds, 0.0, tuple(r for r, _ in runs), tuple(warnings), convention, budget,
                        ga_evaluation, rounded_evaluation)
    if result.improved:
        warnings.append(f"the rounded relaxation ({rounded_objective:.6g}) beats the GA ({ga_objective:.6g})")
    return replace(result, warnings=tuple(warnings), seconds=time.perf_counter() - t0)


def _run_start(relax: Relaxation, origin: str, z0: np.ndarray, **kw):
    lower, upper = kw.get("lower", relax.lower), kw.get("upper", relax.upper)
    z0 = np.clip(z0, lower, upper)
    viol0 = float(relax.violation(z0)[0])
    obj0 = float(relax.evaluate(z0[None], gradients=False).objective[0])
    z, info = relax.solve(z0, **kw)
    viol = float(relax.violation(z)[0])
    obj = float(relax.evaluate(z[None], gradients=False).objective[0])
    rep = StartReport(origin, relax.kernels, obj0, viol0, obj, viol, viol <= FEASIBILITY_TOLERANCE, info["status"],
                      info["message"], info["iterations"], info["evaluations"], info["seconds"])
    return rep, z


def _objective(problem: DeepMADProblem, x: np.ndarray) -> float:
    return float(problem.evaluate_vectors(x[None])[0].objective[0])


def _round_and_polish(problem: DeepMADProblem, sources, polish_iterations: int, polish_starts: int, seed: int):
    """Round every (relaxation, point) source, polish the best few roundings; (x, repaired objective) or (None, nan)."""
    candidates = sorted((c for i, (rel, z) in enumerate(sources)
                         for c in round_and_repair(problem, rel, z, seed=seed + i)), key=lambda c: -c[1])
    if not candidates:
        return None, float("nan")
    x = candidates[0][0]
    if polish_iterations:
        moves = neighbourhood(problem.space.n_var)
        polished = [local_search(problem, xc, moves, max_iter=polish_iterations)
                    for xc, _ in candidates[:polish_starts]]
        x = max(polished, key=lambda p: p[1])[0]
    return x, candidates[0][1]


def _branch(relax: Relaxation, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_evaluations: int):
    """Split a node on its most fractional depth; None at a leaf, else [(value, feasible, lo, hi, z)] per child."""
    di = relax.i_depth
    d = z[di]
    frac = np.abs(d - np.rint(d))
    i = int(np.argmax(frac))
    if frac[i] < 1e-6:
        return None
    children = []
    for side in (0, 1):
        lo_c, hi_c = lo.copy(), hi.copy()
        if side == 0:
            hi_c[di[i]] = math.floor(d[i])
        else:
            lo_c[di[i]] = math.ceil(d[i])
        zc, _ = relax.solve(z, lower=lo_c, upper=hi_c, max_evaluations=max_evaluations)
        feasible = bool(relax.violation(zc)[0] <= FEASIBILITY_TOLERANCE)
        children.append((float(relax.evaluate(zc[None], gradients=False).objective[0]), feasible, lo_c, hi_c, zc))
    return children


def too_large(relax: Relaxation, lower: np.ndarray) -> bool:
    """Whether the node with these lower bounds certainly holds no feasible point.

    MACs, params and layers grow with every width and depth, so when the node's smallest corner
    breaks a size budget, every point of the node does: a certificate, unlike an SLSQP failure.
    """
    G = relax.evaluate(np.maximum(lower, relax.lower)[None], gradients=False).constraints[0, relax.size_columns]
    return bool(np.any(G > FEASIBILITY_TOLERANCE))


def integral_depths(z: np.ndarray, relax: Relaxation) -> np.ndarray:
    """z with its (near-integral) depths snapped to the integers."""
    z = np.array(z, dtype=float)
    z[relax.i_depth] = np.rint(z[relax.i_depth])
    return z


def depth_dive(relax: Relaxation, z_root: np.ndarray, max_evaluations: int = 150) -> np.ndarray | None:
    """Greedy dive to integral depths: branch on the most fractional depth, follow the better child.

    At most S levels of two SLSQP solves; returns the leaf (the relaxed optimum of widths at
    those integral depths) or None when both children of a node end infeasible.
    """
    lo, hi, z = relax.lower.copy(), relax.upper.copy(), z_root
    while True:
        children = _branch(relax, z, lo, hi, max_evaluations)
        if children is None:
            return integral_depths(z, relax)
        feasible = [c for c in children if c[1]]
        if not feasible:
            return None
        _, _, lo, hi, z = max(feasible, key=lambda c: c[0])


def depth_branch_and_bound(relax: Relaxation, z_root: np.ndarray, incumbent: float, max_nodes: int,
                           max_evaluations: int = 150, callback: Callback | None = None,
                           leaf: Callable[[np.ndarray], float] | None = None, relative_gap: float = 0.0
                           ) -> tuple[dict, np.ndarray | None]:
    """Bound the problem with integral depths: best-first branching on the most fractional relaxed depth.

    Each node is the relaxation with integer bounds on the depths, solved by SLSQP warm-started
    from its parent. A node whose relaxed optimum is ≤ the incumbent (the best discrete
    objective known) holds no better discrete genotype and is pruned; a node whose optimum has
    integral depths is a leaf. ``leaf`` (optional) turns a leaf into a discrete genotype and
    returns its objective — rounding the leaf's widths — which raises the incumbent and so
    prunes more. With ``relative_gap`` > 0, nodes within that fraction of the incumbent are
    pruned as well (the standard relative-gap stop of branch and bound): the bound then also
    covers incumbent·(1 + relative_gap).

    What the bound assumes: every node's relaxed optimum is the *global* optimum of that
    node's relaxation. SLSQP is a local method; the relaxation is started at the parent's
    optimum only, so a node's value is a certified bound only if that local optimum is global
    (the multi-start agreement of ``cross_check`` is the evidence, not a proof). The bound is for
    the given per-stage kernels.

    The bound on the discrete optimum is the largest of the incumbent (× (1 + relative_gap) when
    that pruned anything), the leaves and the nodes left open when ``max_nodes`` solves are
    spent. Nodes whose smallest corner breaks a size budget hold no feasible point and are pruned
    (``pruned_too_large``); other nodes SLSQP cannot make feasible are pruned too, but counted
    apart (``pruned_infeasible``: a local solver's failure is not a certificate). ``callback``
    gets a progress dict after every node.

    Returns:
        ({bound, incumbent, nodes, open, leaves, pruned_infeasible, pruned_too_large, pruned_gap,
        relative_gap, complete, best_leaf, seconds}, the best leaf's point or None).
    """
    t0 = time.perf_counter()
    di = relax.i_depth
    root = float(relax.evaluate(z_root[None], gradients=False).objective[0])
    heap = [(-root, 0, relax.lower.copy(), relax.upper.copy(), z_root)]
    count = nodes = infeasible = too_big = 0
    gap_pruned = False
    leaves: list[tuple[float, np.ndarray]] = []

    def threshold():
        return incumbent + relative_gap * abs(incumbent)

    while heap and nodes < max_nodes:
        if -heap[0][0] <= threshold():
            gap_pruned = gap_pruned or -heap[0][0] > incumbent
            heap = []
            break
        negv, _, lo, hi, z = heapq.heappop(heap)
        children = _branch(relax, z, lo, hi, max_evaluations)
        if children is None:
            z = integral_depths(z, relax)
            leaves.append((-negv, z))
            if leaf is not None:
                incumbent = max(incumbent, leaf(z))
            continue
        for v, feasible, lo_c, hi_c, zc in children:
            nodes += 1
            if callback is not None:
                callback({"phase": "depth-bound", "done": nodes, "origin": f"depth node {nodes}/{max_nodes}",
                          "kernels": relax.kernels, "objective": v, "feasible": feasible})
            if not feasible:
                if too_large(relax, lo_c):
                    too_big += 1
                else:
                    infeasible += 1
                continue
            if v > threshold():
                count += 1
                heapq.heappush(heap, (-v, count, lo_c, hi_c, zc))
            elif v > incumbent:
                gap_pruned = True
    best_leaf = max(leaves, key=lambda leaf: leaf[0], default=None)
    bound = max([threshold() if gap_pruned else incumbent]
                + [v for v, _ in leaves] + [-h[0] for h in heap])
    info = {"bound": bound, "incumbent": incumbent, "nodes": nodes, "open": len(heap), "leaves": len(leaves),
            "pruned_infeasible": infeasible, "pruned_too_large": too_big, "pruned_gap": gap_pruned, "relative_gap": relative_gap,
            "complete": not heap,
            "best_leaf": None if best_leaf is None else {"objective": best_leaf[0],
                                                         "depth": [int(round(x)) for x in best_leaf[1][di]]},
            "seconds": time.perf_counter() - t0}
    return info, None if best_leaf is None else best_leaf[1]


def _kernel_text(kernels) -> str:
    return "k" + "/".join(str(k) for k in kernels)


def _violated(problem: DeepMADProblem, genotype: Genotype) -> str:
    """The constraints a genotype breaks, as text ('' when feasible)."""
    ev = evaluate(genotype, problem.alpha, problem.beta, problem.convention)
    b = problem.budget
    parts = []
    if b.rho is not None and ev.rho > b.rho:
        parts.append(f"rho {ev.rho:.4g} > {b.rho:g}")
    if b.macs is not None and ev.macs > b.macs:
        parts.append(f"MACs {ev.macs:.4g} > {b.macs:.4g}")
    if b.params is not None and ev.params > b.params:
        parts.append(f"params {ev.params:.4g} > {b.params:.4g}")
    if b.max_layers is not None and ev.layers > b.max_layers:
        parts.append(f"layers {ev.layers} > {b.max_layers}")
    outs = [st.out for st in genotype.stages]
    if b.monotone and any(a > c for a, c in zip(outs, outs[1:])):
        parts.append("stage channels decrease")
    return ", ".join(parts)


def round_and_repair(problem: DeepMADProblem, relax: Relaxation, z: np.ndarray, max_free: int = 14,
                     top: int = 3, samples: int = 100_000, seed: int = 0) -> list[tuple[np.ndarray, float]]:
    """Round a relaxed point to the space's grid and repair it to feasibility.

    Every variable has a floor and a ceiling on its grid (stem and stage channels, expansion
    btn/c, depth; kernels are the relaxation's). All 2^f floor/ceil combinations of the ``f``
    most fractional variables (at most ``max_free``; the others take the nearest value) are
    scored in one vectorised pass, with ``samples`` randomised roundings (each depth rounded up
    with probability its fractional part, channels within ±4 grid steps, expansions ±2, stem ±1
    of the nearest value; seeded by ``seed``). When none is feasible (several budgets are active
    at the relaxed optimum, so a one-step rounding rarely meets all of them), the least violating
    ones are repaired by a descent on the total violation over single-step moves.

    Returns:
        The ``top`` best feasible (genotype vector, objective) pairs, best first (may be empty).
    """
    space = problem.space
    S = space.num_stages
    w = relax.widths(z)
    grids = ([space.stem_channels] + [space.channels] * S + [space.expansions] * S
             + [range(lo, hi + 1) for lo, hi in zip(space.depth_min, space.depth_max)])
    values = [w["stem"], *w["out"], *w["expansion"], *w["depth"]]
    pairs, frac = [], []
    for grid, v in zip(grids, values):
        g = np.asarray(grid, dtype=float)
        i = int(np.clip(np.searchsorted(g, v), 1, len(g) - 1)) if len(g) > 1 else 0
        lo, hi = (i - 1, i) if len(g) > 1 and g[i - 1] <= v <= g[i] else ((0, 0) if v < g[0] else (len(g) - 1,) * 2)
        if lo != hi and (np.isclose(v, g[lo]) or np.isclose(v, g[hi])):
            lo = hi = lo if np.isclose(v, g[lo]) else hi
        t = 0.0 if lo == hi else (v - g[lo]) / (g[hi] - g[lo])
        pairs.append((lo, hi))
        frac.append(min(t, 1 - t))
    order = [i for i in np.argsort(frac, kind="stable")[::-1] if frac[i] > 0][:max_free]
    nearest = np.array([lo if (lo == hi or (values[i] - grids[i][lo]) <= (grids[i][hi] - values[i])) else hi
                        for i, (lo, hi) in enumerate(pairs)])
    base = np.insert(nearest, 1 + 2 * S, [space.kernels.index(k) for k in relax.kernels])
    base[1 + 3 * S:] += np.asarray(space.depth_min)  # depth indices -> depths
    cols = [i if i < 1 + 2 * S else i + S for i in order]  # variable -> genotype-vector column
    X = np.repeat(base[None], 2 ** len(order), axis=0)
    bits = (np.arange(2 ** len(order))[:, None] >> np.arange(len(order))) & 1
    for b, i, c in zip(bits.T, order, cols):
        lo, hi = pairs[i]
        offset = space.depth_min[i - 1 - 2 * S] if i >= 1 + 2 * S else 0
        X[:, c] = np.where(b == 1, hi, lo) + offset
    if samples:
        rng = np.random.default_rng(seed)
        Y = np.repeat(base[None], samples, axis=0)
        Y[:, 0] += rng.integers(-1, 2, samples)
        Y[:, 1:1 + S] += rng.integers(-4, 5, (samples, S))
        Y[:, 1 + S:1 + 2 * S] += rng.integers(-2, 3, (samples, S))
        d = np.asarray(w["depth"])
        up = rng.random((samples, S)) < d - np.floor(d)
        Y[:, 1 + 3 * S:] = np.floor(d).astype(np.int64) + up
        xl, xu = space.bounds
        X = np.concatenate([X, np.clip(Y, xl, xu)])
    if problem.budget.monotone:
        X = space.repair_monotone(X)
    ev, G = problem.evaluate_vectors(np.unique(X, axis=0))
    X = np.unique(X, axis=0)
    cv = np.maximum(G, 0).sum(axis=1)
    found = [(X[k], float(ev.objective[k])) for k in np.flatnonzero(cv <= 0)]
    # With several budgets active at once a one-step rounding rarely meets all of them: walk
    # the least violating roundings downhill in violation until they are feasible.
    moves = neighbourhood(space.n_var, singles=(1,), pairs=(1,))
    for k in np.argsort(cv, kind="stable")[: 0 if found else top]:
        x = _repair(problem, X[k], moves)
        if x is not None:
            found.append(x)
    found.sort(key=lambda c: -c[1])
    unique = {tuple(x): (x, f) for x, f in reversed(found)}
    return sorted(unique.values(), key=lambda c: -c[1])[:top]


def _repair(problem: DeepMADProblem, x: np.ndarray, moves: np.ndarray, max_iter: int = 60):
    """Least-violation descent over ``moves`` until feasible; (x, objective) or None when stuck."""
    space = problem.space
    xl, xu = space.bounds
    kcols = slice(1 + 2 * space.num_stages, 1 + 3 * space.num_stages)
    moves = moves[np.all(moves[:, kcols] == 0, axis=1)]  # kernels stay the relaxation's
    _, G = problem.evaluate_vectors(x[None])
    current = float(np.maximum(G, 0).sum())
    for _ in range(max_iter):
        N = np.clip(x + moves, xl, xu)
        if problem.budget.monotone:
            N = space.repair_monotone(N)
        ev, G = problem.evaluate_vectors(N)
        cv = np.maximum(G, 0).sum(axis=1)
        if np.any(cv <= 0):
            k = int(np.argmax(np.where(cv <= 0, ev.objective, -np.inf)))
            return N[k], float(ev.objective[k])
        k = int(np.argmin(cv))
        if not cv[k] < current:
            return None
        x, current = N[k], float(cv[k])
    return None


def _nearest(values, v) -> int:
    return int(np.argmin(np.abs(np.log(np.asarray(values, dtype=float)) - math.log(v))))


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
