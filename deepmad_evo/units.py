"""The one structural spec: a genotype expanded into units and their main-path convolutions.

Everything that reads structure — costs, entropy, effectiveness and the torch decoder — reads
what this module produces. The per-block functions below are plain arithmetic, so they accept
Python ints (one genotype, exact) and numpy arrays (a whole population, or real-valued widths in
the continuous relaxation) alike.

Symbols (DESIGN.md §2): ``w`` layer width c_in·k²/g, ``r`` feature-map side, ``s`` stride,
``k`` kernel size, ``btn`` bottleneck / expansion width, ``L`` number of layers.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .genotype import Genotype


class Conv(NamedTuple):
    """A convolution followed by BN; ``dw`` marks a depthwise conv (groups = channels)."""

    c_in: object
    c_out: object
    k: object
    s: int
    dw: bool = False

    @property
    def width(self):
        """DeepMAD layer width w = c_in·k²/g."""
        return self.k * self.k if self.dw else self.c_in * self.k * self.k

    @property
    def weight_count(self):
        """Weight count c_in·c_out·k²/g (no bias: every conv is followed by BN)."""
        return self.k * self.k * self.c_out if self.dw else self.c_in * self.c_out * self.k * self.k


def block_convs(block: str, c_in, out, btn, k, s: int) -> tuple[Conv, ...]:
    """Main-path convolutions of one block (DESIGN.md §1); the stride sits where torchvision puts it."""
    if block == "basic":
        return (Conv(c_in, btn, k, s), Conv(btn, out, k, 1))
    if block == "bottleneck":
        return (Conv(c_in, btn, 1, 1), Conv(btn, btn, k, s), Conv(btn, out, 1, 1))
    if block in ("mbconv", "mbconv_se"):
        return (Conv(c_in, btn, 1, 1), Conv(btn, btn, k, s, dw=True), Conv(btn, out, 1, 1))
    raise ValueError(f"block: expected one of basic, bottleneck, mbconv, mbconv_se, got {block!r}")


_SMOOTH_SQUEEZE = contextvars.ContextVar("smooth_squeeze", default=False)


@contextmanager
def smooth_squeeze():
    """Within this block, real (float) bottleneck widths get the smooth squeeze width max(8, btn/4).

    For solvers that differentiate the costs of real widths by finite differences
    (``rebalance``): the staircase below is flat almost everywhere. Integer widths are unaffected.
    """
    token = _SMOOTH_SQUEEZE.set(True)
    try:
        yield
    finally:
        _SMOOTH_SQUEEZE.reset(token)


def se_width(btn):
    """Squeeze width of the SE module: max(1, round(btn/4) // 8) · 8 (round half to even).

    The continuous relaxation's values (``relax.Dual``) supply their own smooth lower bound of
    this staircase through a ``se_width()`` method: rint/floor have no useful derivative. Inside
    ``smooth_squeeze()``, real widths get the smooth max(8, btn/4).
    """
    if hasattr(btn, "se_width"):
        return btn.se_width()
    if _SMOOTH_SQUEEZE.get() and isinstance(btn, np.ndarray) and np.issubdtype(btn.dtype, np.floating):
        return np.maximum(8.0, btn / 4.0)
    if isinstance(btn, (int, np.integer)):
        return max(1, round(int(btn) / 4) // 8) * 8
    btn = np.asarray(btn)
    if np.issubdtype(btn.dtype, np.integer):
        # Integer round-half-to-even of btn/4, without a float round trip (hot in the search).
        q, r = np.divmod(btn, 4)
        q = q + ((r > 2) | ((r == 2) & (q % 2 == 1)))
        return np.maximum(1, q // 8) * 8
    return np.maximum(1, np.floor_divide(np.rint(btn / 4), 8)) * 8


class SqueezeExcite(NamedTuple):
    """SE on the depthwise conv's output: 1x1 convs with bias ``channels`` → ``squeeze`` → ``channels``."""

    channels: object
    squeeze: object


class AvgPool(NamedTuple):
    """The 2x2 average pool (ceil mode) of a stride-2 shortcut; ``active`` is a flag array for a population."""

    channels: object
    active: object = True


class BlockOps(NamedTuple):
    """Every op of one block: main-path convs, the SE module, the shortcut's ops (pool, then projection)."""

    main: tuple[Conv, ...]
    se: SqueezeExcite | None
    shortcut: tuple  # AvgPool and/or the projection Conv, in the order they run
    residual: object  # the block adds a shortcut (identity when ``shortcut`` is empty)


def block_ops(block: str, c_in, out, btn, k, s: int, first: bool) -> BlockOps:
    """The op list of one block (DESIGN.md §4, §7): what costs count and what the decoder builds."""
    residual, projection, pooled = shortcut(block, c_in, out, s, first)
    path = []
    if not (isinstance(pooled, (bool, np.bool_)) and not pooled):
        path.append(AvgPool(c_in, pooled))
    if projection:
        path.append(Conv(c_in, out, 1, 1))
    se = SqueezeExcite(btn, se_width(btn)) if block == "mbconv_se" else None
    return BlockOps(block_convs(block, c_in, out, btn, k, s), se, tuple(path), residual)


def stem_ops(in_channels, out, k, s: int) -> BlockOps:
    """The stem's op list: one k×k conv + BN (its activation is the decoder's)."""
    return BlockOps((Conv(in_channels, out, k, s),), None, (), False)


def head_ops(c_in, out) -> BlockOps:
    """The head's op list: one 1×1 conv + BN (its activation is the decoder's)."""
    return BlockOps((Conv(c_in, out, 1, 1),), None, (), False)


def shortcut(block: str, c_in, out, s: int, first: bool):
    """The residual path as (residual, projection, pooled) flags (DESIGN.md §7).

    ``basic``/``bottleneck``: a stage's first block projects (ResNet-D: 2x2 average pool when
    s = 2, then 1x1 conv+BN); later blocks add the identity. ``mbconv(_se)``: identity when
    c_in == out (average-pooled when s = 2), no residual otherwise. The flags are arrays when
    ``c_in``/``out`` are.
    """
    if block in ("basic", "bottleneck"):
        return True, bool(first), bool(first and s == 2)
    same = c_in == out
    return same, False, same if s == 2 else False  # the pool runs only on a strided shortcut


@dataclass(frozen=True)
class Unit:
    """The stem, one block, or the head: its main-path layers with one stride, and every other op it has."""

    kind: str  # "stem" | "block" | "head"
    block: str | None
    stage: int  # -1 for the stem, len(stages) for the head
    index: int  # block index inside its stage
    c_in: int
    c_out: int
    btn: int
    k: int
    s: int
    r_in: int
    r_out: int
    segment: int
    layers: tuple[Conv, ...]  # the main path: the layers entropy and ρ count
    se_op: SqueezeExcite | None = None
    shortcut_ops: tuple = ()  # AvgPool and/or projection Conv, in the order they run
    residual: bool = False

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def ops(self) -> BlockOps:
        """Every op of this unit, the list costs count and the decoder builds."""
        return BlockOps(self.layers, self.se_op, self.shortcut_ops, self.residual)

    @property
    def projection(self) -> bool:
        return any(isinstance(op, Conv) for op in self.shortcut_ops)

    @property
    def pooled(self) -> bool:
        return any(isinstance(op, AvgPool) for op in self.shortcut_ops)

    @property
    def se(self) -> int:
        """Squeeze width of the SE module (0: none)."""
        return 0 if self.se_op is None else self.se_op.squeeze


@dataclass(frozen=True)
class Network:
    """An expanded genotype: the ordered units plus segment bookkeeping."""

    genotype: Genotype
    units: tuple[Unit, ...]
    num_segments: int

    @property
    def layers(self) -> tuple[Conv, ...]:
        return tuple(conv for u in self.units for conv in u.layers)

    @property
    def num_layers(self) -> int:
        return sum(len(u.layers) for u in self.units)

    def segment_units(self, j: int) -> tuple[Unit, ...]:
        return tuple(u for u in self.units if u.segment == j)

    def segment_sides(self) -> list[int]:
        return [self.segment_units(j)[-1].r_out for j in range(self.num_segments)]

    def segment_channels(self) -> list[int]:
        return [self.segment_units(j)[-1].c_out for j in range(self.num_segments)]

    @property
    def out_channels(self) -> int:
        return self.units[-1].c_out


def segment_ids(strides: list[int]) -> list[int]:
    """Segment index of each unit: a new segment begins at every stride-2 unit but the first."""
    ids, j = [], 0
    for i, s in enumerate(strides):
        if s == 2 and i > 0:
            j += 1
        ids.append(j)
    return ids


def unit_strides(genotype: Genotype) -> list[int]:
    """Stride of every unit in order (stem, each block of each stage, head)."""
    strides = [genotype.stem.s]
    for st in genotype.stages:
        strides += [st.s] + [1] * (st.depth - 1)
    if genotype.head is not None:
        strides.append(1)
    return strides


def expand(genotype: Genotype) -> Network:
    """Expand a genotype into its units (stem, every block, head) in order.

    Args:
        genotype: a validated genotype.

    Returns:
        The expanded ``Network``; feature-map sides follow PyTorch conv arithmetic (⌈r/s⌉).
    """
    seg = iter(segment_ids(unit_strides(genotype)))
    g = genotype
    r = g.image_size
    r_out = -(-r // g.stem.s)
    units = [Unit("stem", None, -1, 0, g.in_channels, g.stem.out, 0, g.stem.k, g.stem.s, r, r_out, next(seg),
                  stem_ops(g.in_channels, g.stem.out, g.stem.k, g.stem.s).main)]
    c, r = g.stem.out, r_out
    for i, st in enumerate(g.stages):
        for b in range(st.depth):
            s = st.s if b == 0 else 1
            r_out = -(-r // s)
            ops = block_ops(st.block, c, st.out, st.btn, st.k, s, b == 0)
            units.append(Unit("block", st.block, i, b, c, st.out, st.btn, st.k, s, r, r_out, next(seg), ops.main,
                              ops.se, ops.shortcut, bool(ops.residual)))
            c, r = st.out, r_out
    if g.head is not None:
        units.append(Unit("head", None, len(g.stages), 0, c, g.head.out, 0, 1, 1, r, r, next(seg),
                          head_ops(c, g.head.out).main))
    return Network(g, tuple(units), units[-1].segment + 1)
