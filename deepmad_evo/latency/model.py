"""The latency model: per-op times interpolated from a table, summed per unit, plus a fitted overhead.

Per op (``ops.py``), the table holds slices: one (kind, kernel, stride, side, extra) each, timed on
a grid of channel counts. Between grid points the model interpolates q = ln(t / work) — ``work``
is the op's MACs or elements — bilinearly in ln(channels), and linearly in ln(side) between the
sides the table has; outside the grid q is held at the edge, i.e. time per unit of work stays
constant, which is what large compute-bound ops show. Grid cells too large to time are filled
from the largest timed cell below them in every channel axis (same rule).

A unit's latency is a·Σ(ops) + b and a network's is Σ(units) + a·(classifier) + c. Which of the
forms ``sum`` (a=1, b=c=0), ``scale`` (a), ``offset`` (b, c) and ``affine`` (a, b, c) is used is
decided by measurement: each is fitted (relative least squares) to the whole networks the table
holds, and the one with the lowest leave-one-out mean absolute percentage error wins.

``predict_population`` does the same arithmetic over numpy arrays for a whole population of one
template (a stage of depth d is its first block plus d − 1 repeats, as in
``objective.evaluate_population``); ``predict_units`` walks ``units.expand`` one unit at a time.
The two agree to rounding (a test checks it). numpy only: no torch.

Symbols: t seconds, q = ln(t/work), a/b/c overhead coefficients, S raw op sum, U unit count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..genotype import Genotype
from ..units import Network, expand
from .ops import OpUse, activation_of, block_ops, classifier_ops, head_ops, stem_ops, unit_ops, work
from .table import LatencyTable, LatencyTableError

FORMS = ("sum", "scale", "offset", "affine")
# Fewer than this many timed networks: no overhead is fitted (the plain sum).
MIN_NETWORKS = 4
SIMPLER_WITHIN = 0.01
DENSE_MIN = 256  # population size from which lookup tables pay off
DENSE_MAX = 2**21  # entries per lookup table (16 MiB)


def _as_index(v):
    """``v`` as a 1-D int64 array of non-negative channels, or ``None`` when it cannot index a lookup table."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = np.full(1, int(v), dtype=np.int64)
    if not (isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu"):
        return None
    if v.size > 1 and (v & 7).any() or v.size == 1 and int(v[0]) % 8:
        return None
    return v


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class _Slice:
    """One (op, k, s, r, extra) grid: ln channel axes and q on them."""

    axes: tuple[np.ndarray, ...]  # ln(channels), ascending
    inv: tuple[np.ndarray, ...]  # 1 / axis steps (0 for a single-point axis)
    q: np.ndarray  # flat q, row-major over the axes

    def __call__(self, *logs):
        idx, ws = [], []
        for ax, inv, u in zip(self.axes, self.inv, logs):
            if len(ax) == 1:
                idx.append(0)
                ws.append(0.0)
                continue
            i = np.clip(np.searchsorted(ax, u, side="right") - 1, 0, len(ax) - 2)
            idx.append(i)
            ws.append(np.clip((u - ax[i]) * inv[i], 0.0, 1.0))
        if len(self.axes) == 1:
            i, w = idx[0], ws[0]
            if len(self.axes[0]) == 1:
                return self.q[0] + 0.0 * logs[0]
            return self.q[i] * (1 - w) + self.q[i + 1] * w
        (i, j), (wa, wb) = idx, ws
        n = len(self.axes[1])
        di = 1 if len(self.axes[0]) > 1 else 0
        dj = 1 if n > 1 else 0
        base = i * n + j
        q00, q01 = self.q[base], self.q[base + dj]
        q10, q11 = self.q[base + di * n], self.q[base + di * n + dj]
        return (q00 * (1 - wb) + q01 * wb) * (1 - wa) + (q10 * (1 - wb) + q11 * wb) * wa


def _fill(q: np.ndarray) -> np.ndarray:
    """Fill untimed (NaN) cells from the timed cell below them with the largest index sum (mean on ties)."""
    if not np.isnan(q).any():
        return q
    timed = np.argwhere(~np.isnan(q))
    if not len(timed):
        raise LatencyTableError("latency table: a slice holds no timed cell")
    out = q.copy()
    for cell in np.argwhere(np.isnan(q)):
        below = timed[(timed <= cell).all(axis=1)]
        pool = below if len(below) else timed
        score = pool.sum(axis=1) if len(below) else -np.abs(pool - cell).sum(axis=1)
        best = pool[score == score.max()]
        out[tuple(cell)] = np.mean([q[tuple(b)] for b in best])
    return out


def _describe(family) -> str:
    op, k, s, extra = family
    return f"{op}" + (f" k{k}" if k else "") + f" s{s}" + (f" {extra}" if extra != "" else "")


class LatencyModel:
    """Predict the latency of networks on the device a ``LatencyTable`` was measured on.

    Args:
        table: the measurements.
        form: one of ``FORMS`` to force an overhead form; default: chosen by leave-one-out error.
    """

    def __init__(self, table: LatencyTable, form: str | None = None) -> None:
        self.table = table
        cells: dict[tuple, dict] = {}
        for (op, k, s, r, extra, c_a, c_b), v in table.ops.items():
            cells.setdefault((op, k, s, extra), {}).setdefault(r, {})[(c_a, c_b)] = v["seconds"]
        self._families: dict[tuple, tuple[np.ndarray, list[_Slice]]] = {}
        for family, by_r in cells.items():
            op, k, s, extra = family
            sides = sorted(by_r)
            slices = []
            for r in sides:
                pts = by_r[r]
                a = np.array(sorted({c for c, _ in pts}), dtype=float)
                b = np.array(sorted({c for _, c in pts}), dtype=float)
                two_d = op == "conv"
                q = np.full((len(a), len(b)) if two_d else (len(a),), np.nan)
                ia = {c: i for i, c in enumerate(a)}
                ib = {c: i for i, c in enumerate(b)}
                for (c_a, c_b), sec in pts.items():
                    w = float(work(op, k, s, r, extra, c_a, c_b))
                    q[(ia[c_a], ib[c_b]) if two_d else ia[c_a]] = math.log(sec / w)
                axes = (np.log(a), np.log(b)) if two_d else (np.log(a),)
                inv = tuple(np.divide(1.0, np.diff(ax), out=np.zeros(max(len(ax) - 1, 1)), where=np.diff(ax) > 0)
                            if len(ax) > 1 else np.zeros(1) for ax in axes)
                slices.append(_Slice(axes, inv, _fill(q).ravel()))
            self._families[family] = (np.log(np.array(sides, dtype=float)), slices)
        self._dense_tables: dict[tuple, np.ndarray] = {}
        self._compiled: dict = {}
        self.selection = {}
        self.form, self.coef = "sum", (1.0, 0.0, 0.0)
        nets = [n for n in table.networks if n.get("role", "calibration") == "calibration"]
        if form is not None:
            if form not in FORMS:
                raise ValueError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")
            self.form, self.coef = form, self._fit(form, nets) if nets else (1.0, 0.0, 0.0)
        elif len(nets) >= MIN_NETWORKS:
            self.selection = {f: self._loo(f, nets) for f in FORMS}
            # The simplest form within one percentage point of the best: the fits are small.
            best = min(self.selection.values())
            self.form = next(f for f in FORMS if self.selection[f] <= best + SIMPLER_WITHIN)
            self.coef = self._fit(self.form, nets)

    # ------------------------------------------------------------------ ops
    def kernels(self, op: str, s: int, extra="") -> list[int]:
        return sorted(k for (o, k, st, e) in self._families if o == op and st == s and e == extra)

    def op_seconds(self, use: OpUse):
        """Interpolated seconds of one op use (arrays broadcast; ``weight`` applied)."""
        k = use.k
        if isinstance(k, np.ndarray) and k.ndim:
            total, covered = 0.0, np.zeros(k.shape, bool)
            for kv in self.kernels(use.op, use.s, use.extra):
                hit = k == kv
                if hit.any():
                    total = total + np.where(hit, self.op_seconds(use._replace(k=kv, weight=1)), 0.0)
                    covered |= hit
            if not covered.all():
                self.op_seconds(use._replace(k=int(k[~covered].flat[0])))  # raises: not in the table
            return total * use.weight
        family = (use.op, int(k), use.s, use.extra)
        if family not in self._families:
            have = ", ".join(sorted(_describe(f) for f in self._families if f[0] == use.op)) or "none"
            raise LatencyTableError(
                f"latency table: no timings of {_describe(family)} (it has {use.op}: {have}); "
                f"expected a table profiled for this search space (run.py profile --config PRESET)")
        dense = self._dense(family, use)
        if dense is not None:
            return dense * use.weight
        return self._interpolate(family, use) * use.weight

    def _interpolate(self, family, use: OpUse):
        sides, slices = self._families[family]
        logs = (np.log(np.asarray(use.c_a, dtype=float)),)
        if use.op == "conv":
            logs += (np.log(np.asarray(use.c_b, dtype=float)),)
        lr = math.log(use.r)
        j = int(np.searchsorted(sides, lr))
        if j < len(sides) and sides[j] == lr:
            q = slices[j](*logs)
        elif j == 0 or j == len(sides):
            q = slices[min(j, len(sides) - 1)](*logs)
        else:
            w = (lr - sides[j - 1]) / (sides[j] - sides[j - 1])
            q = slices[j - 1](*logs) * (1 - w) + slices[j](*logs) * w
        return np.exp(q) * work(use.op, family[1], use.s, use.r, use.extra, use.c_a, use.c_b)

    def _dense(self, family, use: OpUse):
        """Population fast path: a lookup table of ``_interpolate`` over every multiple of 8 up to a power of two.

        Populations of a search space have integer channels, almost always multiples of 8; the
        table is built once per (op, side, extent) from the very same interpolation, so the result
        is the interpolated value itself. ``None`` when the inputs do not qualify.
        """
        two_d = use.op == "conv"
        a = _as_index(use.c_a)
        b = _as_index(use.c_b) if two_d else np.zeros(1, np.int64)
        if a is None or b is None or max(a.size, b.size) < DENSE_MIN:
            return None
        ext_a, ext_b = _pow2(int(a.max()) // 8 + 1), _pow2(int(b.max()) // 8 + 1)
        if ext_a * ext_b > DENSE_MAX:
            return None
        key = (family, use.r, ext_a, ext_b)
        table = self._dense_tables.get(key)
        if table is None:
            va = np.maximum(np.arange(ext_a), 1) * 8
            vb = np.maximum(np.arange(ext_b), 1) * 8
            grid = use._replace(c_a=np.repeat(va, ext_b), c_b=np.tile(vb, ext_a) if two_d else 0, weight=1)
            table = self._dense_tables[key] = np.asarray(self._interpolate(family, grid), dtype=float)
        ia = (a >> 3) * ext_b if a.size > 1 else int(a[0] >> 3) * ext_b
        ib = (b >> 3) if b.size > 1 else int(b[0] >> 3)
        return table[ia + ib]

    def _fused(self, members: list[OpUse]):
        """Σ seconds of 1-D ops on one channel array (and one kernel array): one lookup in a summed table."""
        a = members[0].c_a
        if (a & 7).any():
            return sum(self.op_seconds(m) for m in members)
        ext = _pow2(int(a.max()) // 8 + 1)
        karr = next((m.k for m in members if isinstance(m.k, np.ndarray)), None)
        kernels = [None]
        if karr is not None:
            sets = [set(self.kernels(m.op, m.s, m.extra)) for m in members if isinstance(m.k, np.ndarray)]
            kernels = sorted(set.intersection(*sets))
        key = (tuple((m.op, None if isinstance(m.k, np.ndarray) else m.k, m.s, m.r, m.extra) for m in members), ext)
        entry = self._dense_tables.get(key)
        if entry is None:
            va = np.maximum(np.arange(ext), 1) * 8
            rows = []
            for kv in kernels:
                row = 0.0
                for m in members:
                    kk = kv if isinstance(m.k, np.ndarray) else m.k
                    row = row + self._interpolate((m.op, int(kk), m.s, m.extra), m._replace(c_a=va, k=kk, weight=1))
                rows.append(np.broadcast_to(row, (ext,)))
            kpos = np.full(max([k or 0 for k in kernels]) + 1, -1, dtype=np.int64)
            for i, kv in enumerate(kernels):
                if kv is not None:
                    kpos[kv] = i
            entry = self._dense_tables[key] = (np.concatenate(rows).astype(float), kpos)
        table, kpos = entry
        if karr is None:
            return table[a >> 3]
        if karr.max() >= len(kpos) or karr.min() < 0 or (kpos[karr] < 0).any():
            return sum(self.op_seconds(m) for m in members)  # raises, naming the kernel the table lacks
        return table[kpos[karr] * ext + (a >> 3)]

    def ops_seconds(self, uses) -> object:
        """Σ seconds of op uses; over a population, 1-D ops on the same channel array are looked up fused."""
        total = 0.0
        groups: dict[tuple, list[OpUse]] = {}
        for use in uses:
            a = use.c_a
            if (use.op != "conv" and isinstance(a, np.ndarray) and a.size >= DENSE_MIN and _as_index(a) is not None
                    and np.ndim(use.weight) == 0
                    and use.weight == 1):
                groups.setdefault((id(a), id(use.k) if isinstance(use.k, np.ndarray) else None), []).append(use)
            else:
                total = total + self.op_seconds(use)
        for members in groups.values():
            total = total + self._fused(members)
        return total

    # ------------------------------------------------------------------ overhead fit
    def _raw(self, text: str) -> tuple[float, int]:
        """(Σ op seconds over the whole network, number of units) of a network in text form."""
        net = expand(Genotype.from_text(text))
        units = [float(self.ops_seconds(ops)) for ops in network_ops(net)]
        return float(sum(units) + self.ops_seconds(_classifier(net))), len(net.units)

    def _design(self, form: str, nets):
        rows, y = [], []
        for n in nets:
            S, U = self._raw(n["text"])
            rows.append((S, U, 1.0))
            y.append(n["seconds"])
        return np.array(rows), np.array(y)

    @staticmethod
    def _solve(form: str, A: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
        S = A[:, 0]
        if form == "sum":
            return 1.0, 0.0, 0.0
        w = 1.0 / y  # relative least squares: minimise Σ((pred − t)/t)²
        if form == "scale":
            return float(np.sum(w * w * S * y) / np.sum(w * w * S * S)), 0.0, 0.0
        if form == "offset":
            coef, *_ = np.linalg.lstsq(A[:, 1:] * w[:, None], (y - S) * w, rcond=None)
            return 1.0, float(coef[0]), float(coef[1])
        coef, *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
        return float(coef[0]), float(coef[1]), float(coef[2])

    def _fit(self, form: str, nets) -> tuple[float, float, float]:
        A, y = self._design(form, nets)
        return self._solve(form, A, y)

    def _loo(self, form: str, nets) -> float:
        A, y = self._design(form, nets)
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            a, b, c = self._solve(form, A[keep], y[keep])
            errs.append(abs(a * A[i, 0] + b * A[i, 1] + c - y[i]) / y[i])
        return float(np.mean(errs))

    # ------------------------------------------------------------------ networks
    def predict_units(self, genotype: Genotype | Network) -> list[float]:
        """Seconds of every unit of ``units.expand`` (stem, blocks, head), overhead included."""
        net = genotype if isinstance(genotype, Network) else expand(genotype)
        a, b, _ = self.coef
        return [a * float(self.ops_seconds(ops)) + b for ops in network_ops(net)]

    def rest_seconds(self, genotype: Genotype | Network) -> float:
        """Seconds outside the units: the classifier plus the per-network constant."""
        net = genotype if isinstance(genotype, Network) else expand(genotype)
        a, _, c = self.coef
        return a * float(self.ops_seconds(_classifier(net))) + c

    def predict(self, genotype: Genotype | Network) -> float:
        """Predicted seconds of one forward pass (the table's batch and settings)."""
        net = genotype if isinstance(genotype, Network) else expand(genotype)
        return float(sum(self.predict_units(net)) + self.rest_seconds(net))

    def check_space(self, space) -> None:
        """Raise ``LatencyTableError`` naming the first op a space's networks run that the table has no timings of."""
        xl, xu = space.bounds
        S = space.num_stages
        X = np.repeat(xl[None], len(space.kernels) + 1, axis=0)
        for i in range(len(space.kernels)):
            X[i, 1 + 2 * S:1 + 3 * S] = i
        X[-1] = xu
        X[-1, 1:1 + S] = X[-1, 1]  # equal channels: the identity residuals too
        self.predict_population(space.template, *space.decode(X))

    def compile(self, space) -> SpaceLatency:
        """The model folded into lookup tables for one search space (cached)."""
        cached = self._compiled.get(space)
        if cached is None:
            cached = self._compiled[space] = SpaceLatency(self, space)
        return cached

    def predict_population(self, template, stem, out, btn, kernel, depth) -> np.ndarray:
        """Predicted seconds of N networks of one ``space.Template`` (arrays as for ``evaluate_population``)."""
        a, b, c = self.coef
        t = template
        r_in, r_out = t.sides("torch")
        stem = np.asarray(stem)
        total = a * self.ops_seconds(stem_ops(t.in_channels, stem, t.stem_kernel, t.stem_stride, r_in[0],
                                              activation_of(t.blocks[0]))) + b
        c_prev = stem
        for i, (block, s) in enumerate(zip(t.blocks, t.strides)):
            o, m, k, d = out[:, i], btn[:, i], kernel[:, i], depth[:, i]
            first = a * self.ops_seconds(block_ops(block, c_prev, o, m, k, s, r_in[i + 1], True)) + b
            rep = a * self.ops_seconds(block_ops(block, o, o, m, k, 1, r_out[i + 1], False)) + b
            total = total + first + (d - 1) * rep
            c_prev = o
        if t.head is not None:
            total = total + a * self.ops_seconds(head_ops(c_prev, t.head, r_out[-1], activation_of(t.blocks[-1]))) + b
            c_prev = t.head
        total = total + a * self.ops_seconds(classifier_ops(c_prev, r_out[-1], t.num_classes)) + c
        return np.broadcast_to(np.asarray(total, dtype=float), (len(stem),)).copy()


class SpaceLatency:
    """A model compiled for one search space: predicted seconds of integer genotype vectors by table lookups.

    Everything the template fixes is folded into per-stage tables built from the model's own
    interpolation: the repeat block as a function of (out, expansion, kernel) indices, the first
    block split into what depends on (out, expansion, kernel), on (input channels, btn) and on
    (input channels, out); the stem, and the head plus classifier. A vector then costs about four
    gathers per stage. ``model.predict_population`` on the decoded values agrees to rounding.
    """

    def __init__(self, model: LatencyModel, space) -> None:
        a, b, c = model.coef
        t = space.template
        self.space = space
        S = space.num_stages
        r_in, r_out = t.sides("torch")
        stem_t, ch_t, ex_t, k_t = space._tables
        m = space.multiple
        o3 = ch_t[:, None, None]
        k3 = k_t[None, None, :]
        btn3 = np.maximum(m, np.floor(ex_t[None, :, None] * o3 / m + 0.5).astype(np.int64) * m)
        btn3 = np.broadcast_to(btn3, (len(ch_t), len(ex_t), len(k_t)))
        o3, k3 = np.broadcast_to(o3, btn3.shape), np.broadcast_to(k3, btn3.shape)
        flat = {"o": o3.ravel(), "t": btn3.ravel(), "k": k3.ravel()}
        self.stem = a * model.ops_seconds(stem_ops(t.in_channels, stem_t, t.stem_kernel, t.stem_stride, r_in[0],
                                                   activation_of(t.blocks[0]))) + b
        self.first, self.pre, self.pre_k, self.pair, self.repeat = [], [], [], [], []
        self.btn_max = int(btn3.max())
        for i, (block, s) in enumerate(zip(t.blocks, t.strides)):
            prev_t = stem_t if i == 0 else ch_t
            # First block: classify its ops by which channel arrays they read.
            C = np.asarray(prev_t[:1]).copy()  # a marker: which ops read the input channels
            uses = block_ops(block, C, flat["o"], flat["t"], flat["k"], s, r_in[i + 1], True)
            on_c = [u for u in uses if u.c_a is C or (isinstance(u.c_b, np.ndarray) and u.c_b is C)
                    or isinstance(u.weight, np.ndarray)]
            rest = [u for u in uses if not any(u is v for v in on_c)]
            self.first.append((a * model.ops_seconds(rest) + b).reshape(btn3.shape))
            # (input channels, btn[, kernel]) ops: the expanding conv; indexed by btn // multiple.
            btn_all = np.arange(0, self.btn_max + m, m)
            btn_all[0] = m
            grid_c, grid_t = np.meshgrid(prev_t, btn_all, indexing="ij")
            pre = [u for u in on_c if u.c_b is not None and u.c_b is flat["t"] and u.c_a is C]
            pre_k = [u for u in pre if isinstance(u.k, np.ndarray)]
            self.pre.append(a * sum((model.op_seconds(u._replace(c_a=grid_c.ravel(), c_b=grid_t.ravel()))
                                     for u in pre if not isinstance(u.k, np.ndarray)), np.zeros(grid_c.size))
                            .reshape(grid_c.shape))
            self.pre_k.append(None if not pre_k else np.stack([
                a * sum(model.op_seconds(u._replace(c_a=grid_c.ravel(), c_b=grid_t.ravel(), k=int(kv))) for u in pre_k)
                .reshape(grid_c.shape) for kv in k_t]))
            # (input channels, out) ops: shortcut pool/projection, the identity residual where c_in == out.
            pair = [u for u in on_c if not any(u is v for v in pre)]
            gc, go = np.meshgrid(prev_t, ch_t, indexing="ij")
            gc, go = gc.ravel(), go.ravel()
            same = gc == go
            total = np.zeros(gc.size)
            for u in pair:
                ca = gc if u.c_a is C else go
                cb = gc if u.c_b is C else go if isinstance(u.c_b, np.ndarray) else u.c_b
                w = same if isinstance(u.weight, np.ndarray) else u.weight
                if isinstance(u.k, np.ndarray):
                    raise ValueError(f"latency: a kernel-dependent shortcut op ({u.op}) is not compiled")
                total = total + model.op_seconds(u._replace(c_a=ca, c_b=cb, weight=w))
            self.pair.append((a * total).reshape(len(prev_t), len(ch_t)))
            if space.depth_max[i] > 1:
                rep = block_ops(block, flat["o"], flat["o"], flat["t"], flat["k"], 1, r_out[i + 1], False)
                self.repeat.append((a * model.ops_seconds(rep) + b).reshape(btn3.shape))
            else:
                self.repeat.append(np.zeros(btn3.shape))
        self.shape = btn3.shape
        self.btn_pos = (btn3[:, :, 0] // m).ravel()
        last = ch_t
        head = 0.0
        if t.head is not None:
            head = a * model.ops_seconds(head_ops(ch_t, t.head, r_out[-1], activation_of(t.blocks[-1]))) + b
            last = t.head
        cls = a * model.ops_seconds(classifier_ops(np.broadcast_to(last, ch_t.shape).copy(), r_out[-1], t.num_classes))
        self.tail = np.broadcast_to(head + cls + c, ch_t.shape).astype(float)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Predicted seconds of integer vectors X (N, n_var)."""
        S = self.space.num_stages
        X = np.asarray(X, dtype=np.int64)
        E, K = self.shape[1], self.shape[2]
        total = self.stem.take(X[:, 0])
        prev = X[:, 0]
        for i in range(S):
            o = X[:, 1 + i]
            oe = o * E + X[:, 1 + S + i]
            fi = oe * K + X[:, 1 + 2 * S + i]
            pre = self.pre[i]
            first = (self.first[i].take(fi) + pre.take(prev * pre.shape[1] + self.btn_pos.take(oe))
                     + self.pair[i].take(prev * self.pair[i].shape[1] + o))
            if self.pre_k[i] is not None:
                pk = self.pre_k[i]
                first = first + pk.take((X[:, 1 + 2 * S + i] * pk.shape[1] + prev) * pk.shape[2]
                                        + self.btn_pos.take(oe))
            total = total + first + (X[:, 1 + 3 * S + i] - 1) * self.repeat[i].take(fi)
            prev = o
        return total + self.tail.take(prev)


def network_ops(net: Network) -> list[list[OpUse]]:
    """The timed ops of every unit of an expanded network, in order (each unit's own op list)."""
    g = net.genotype
    acts = {"stem": activation_of(g.stages[0].block), "head": activation_of(g.stages[-1].block)}
    return [unit_ops(u, acts.get(u.kind, "")) for u in net.units]


def _classifier(net: Network) -> list[OpUse]:
    return classifier_ops(net.out_channels, net.units[-1].r_out, net.genotype.num_classes)


_MODELS: dict[tuple, LatencyModel] = {}


def model_for(path) -> LatencyModel:
    """The model of a table file, cached per process (keyed by path, size and modification time).

    Search chains and Pareto workers receive only the table's path in the ``Budget``; each process
    reads it once and keeps its lookup tables warm across chains.
    """
    import os

    from .table import load_table

    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
        key = (p, st.st_size, st.st_mtime_ns)
    except OSError:
        key = (p, None, None)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = LatencyModel(load_table(p))
    return model
