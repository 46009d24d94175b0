"""Forward-mode dual numbers: just enough numpy for ``objective.evaluate_population`` to return exact gradients."""

from __future__ import annotations

from typing import Callable

import numpy as np



class Dual:
    """An array of values with their gradients along a trailing axis (forward-mode AD).

    ``val`` has shape V, ``grad`` shape V + (n,). Arithmetic, ``np.log``/``np.exp``, indexing,
    ``np.broadcast_to``/``np.column_stack``/``np.zeros_like`` and ``sum``/``max`` propagate exact
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
    """a ∘ b for ∘ in + − × ÷ with at least one dual operand.

    Plain scalars, duals of equal value shape and arrays of the dual's value shape take fast
    paths (the relaxation evaluates one point at a time, so per-call overhead is what counts);
    the general path broadcasts. Every path does the same floating-point operations.
    """
    tb = type(b)
    if tb is Dual:
        if type(a) is Dual:
            av, bv = a.val, b.val
            if av.shape == bv.shape:
                if ufunc is np.add:
                    return _make(av + bv, a.grad + b.grad)
                if ufunc is np.subtract:
                    return _make(av - bv, a.grad + -b.grad)
                if ufunc is np.multiply:
                    return _make(av * bv, a.grad * bv[..., None] + b.grad * av[..., None])
        elif type(a) in _SCALAR_TYPES or isinstance(a, _SCALARS):
            if ufunc is np.add:
                return _make(a + b.val, b.grad)
            if ufunc is np.subtract:
                return _make(a - b.val, -b.grad)
            if ufunc is np.multiply:
                return _make(a * b.val, a * b.grad)
            v = a / b.val
            return _make(v, b.grad * (-v / b.val)[..., None])
    elif tb in _SCALAR_TYPES or isinstance(b, _SCALARS):
        if ufunc is np.add or ufunc is np.subtract:
            return _make(ufunc(a.val, b), a.grad)
        return _make(ufunc(a.val, b), ufunc(a.grad, b))
    elif tb is np.ndarray and ufunc is np.multiply and type(a) is Dual and b.shape == a.val.shape:
        return _make(a.val * b, a.grad * b.astype(float)[..., None])
    return _general(ufunc, a, b)


_SCALAR_TYPES = frozenset((int, float, np.float64, np.int64))


def _general(ufunc, a, b) -> Dual:
    """a ∘ b with broadcasting, plain arrays on either side and division."""
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
