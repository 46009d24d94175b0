"""The timed operations of a decoded network: the op list ``units`` gives each unit, as timed ops.

``units`` is the one structural spec: every unit carries its op list (``units.BlockOps``: main-path
convs, SE, shortcut pool/projection, residual). This module only says how the decoder
(``model.py``, eval mode) *runs* that list, which is what the profiler times and the latency model
sums: conv+BN modules, an activation after every main-path conv but the last (and after the
residual add in ResNet families: MobileNet blocks end linear), SE after the depthwise conv, the
shortcut's ops, the residual add; the global pool + classifier after the last unit. Like
``units.block_ops`` the functions are plain arithmetic, so channel arguments may be Python ints
(one network) or numpy arrays (a population); ``weight`` is 1 or a boolean array for ops that only
some networks run (the identity residual of a mobile block exists only where c_in == c_out).

Op kinds and their channel arguments:

=======  ==========================  =================================================
conv     c_in → c_out, k, s, r_in    dense k×k conv + BN (2-D channel grid)
convsq   c → c, k, s, r_in           the bottleneck's k×k conv btn → btn (1-D grid)
dw       c, k, s, r_in               depthwise k×k conv + BN
act      c at side r                 activation (``extra`` = relu | silu)
se       c at side r                 squeeze-excitation (``extra`` = its activation)
add      c at side r                 residual addition
pool     c at side r_in              2×2 average pool (ceil mode) of a strided shortcut
fc       c at side r                 global average pool + linear (``extra`` = classes)
=======  ==========================  =================================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import units
from ..genotype import MOBILE_BLOCKS
from ..units import AvgPool, BlockOps

OP_KINDS = ("conv", "convsq", "dw", "act", "se", "add", "pool", "fc")
TWO_D = ("conv",)


class OpUse(NamedTuple):
    """One op a unit runs: its slice parameters, channels and a weight (1 or a 0/1 array)."""

    op: str
    k: object  # kernel (int, or an array over a population); 0 for ops without one
    s: int
    r: int  # input side
    extra: object  # activation name, classes, or ""
    c_a: object
    c_b: object = 0
    weight: object = 1


def activation_of(block: str | None) -> str:
    """The decoder's default activation per family (DESIGN.md §7): SiLU for mobile blocks, ReLU otherwise."""
    return "silu" if block in MOBILE_BLOCKS else "relu"


def side_after(r: int, s: int) -> int:
    return -(-r // s)


def _weight(flag):
    """A run flag of ``units`` (bool or boolean array) as an op weight."""
    return int(flag) if isinstance(flag, (bool, np.bool_)) else flag


def timed_ops(ops: BlockOps, r_in: int, act: str, ends_active: bool, square: int | None = None) -> list[OpUse]:
    """The ops a unit's op list runs, in execution order (``model.Block`` / the stem and head in eval mode).

    Args:
        ops: the unit's op list (``units.block_ops``, ``units.stem_ops``, ``units.head_ops``, ``Unit.ops``).
        r_in: the unit's input side.
        act: the activation (``activation_of``).
        ends_active: an activation follows the last conv (stem, head) or the residual add (ResNet blocks).
        square: index of a main conv that maps c → c (the bottleneck's k×k conv, timed as ``convsq``).
    """
    uses, r = [], r_in
    last = len(ops.main) - 1
    for i, conv in enumerate(ops.main):
        if conv.dw:
            uses.append(OpUse("dw", conv.k, conv.s, r, "", conv.c_in))
        elif i == square:
            uses.append(OpUse("convsq", conv.k, conv.s, r, "", conv.c_in))
        else:
            uses.append(OpUse("conv", conv.k, conv.s, r, "", conv.c_in, conv.c_out))
        r = side_after(r, conv.s)
        if i < last or ends_active and ops.residual is False:
            uses.append(OpUse("act", 0, 1, r, act, conv.c_out))
        if conv.dw and ops.se is not None:
            uses.append(OpUse("se", 0, 1, r, act, ops.se.channels))
    if ops.residual is not False:
        r_sc = r_in
        for op in ops.shortcut:
            if isinstance(op, AvgPool):
                uses.append(OpUse("pool", 0, 2, r_sc, "", op.channels, weight=_weight(op.active)))
                r_sc = side_after(r_sc, 2)
            else:  # the projection conv + BN, on the (pooled) shortcut
                uses.append(OpUse("conv", op.k, op.s, r_sc, "", op.c_in, op.c_out))
        out = ops.main[-1].c_out
        uses.append(OpUse("add", 0, 1, r, "", out, weight=_weight(ops.residual)))
        if ends_active:
            uses.append(OpUse("act", 0, 1, r, act, out))
    return uses


def stem_ops(in_channels: int, out, k: int, s: int, r: int, act: str) -> list[OpUse]:
    return timed_ops(units.stem_ops(in_channels, out, k, s), r, act, True)


def head_ops(c_in, out: int, r: int, act: str) -> list[OpUse]:
    return timed_ops(units.head_ops(c_in, out), r, act, True)


def classifier_ops(c, r: int, num_classes: int) -> list[OpUse]:
    return [OpUse("fc", 0, 1, r, int(num_classes), c)]


def block_ops(block: str, c_in, out, btn, k, s: int, r_in: int, first: bool) -> list[OpUse]:
    """Timed ops of one block: ``units.block_ops`` run the decoder's way."""
    return timed_ops(units.block_ops(block, c_in, out, btn, k, s, first), r_in, activation_of(block),
                     block not in MOBILE_BLOCKS, 1 if block == "bottleneck" else None)


def unit_ops(unit: units.Unit, act: str) -> list[OpUse]:
    """Timed ops of one unit of ``units.expand`` (its own op list, ``Unit.ops``)."""
    if unit.kind != "block":
        return timed_ops(unit.ops, unit.r_in, act, True)
    return timed_ops(unit.ops, unit.r_in, activation_of(unit.block), unit.block not in MOBILE_BLOCKS,
                     1 if unit.block == "bottleneck" else None)


def work(op: str, k, s: int, r: int, extra, c_a, c_b):
    """A size measure each op's time grows with (MACs or elements); the model extrapolates at constant time per unit of it."""
    r_out = side_after(r, s)
    if op == "conv":
        return c_a * c_b * k * k * r_out * r_out + c_b * r_out * r_out
    if op == "convsq":
        return c_a * c_a * k * k * r_out * r_out + c_a * r_out * r_out
    if op == "dw":
        return c_a * (k * k + 1) * r_out * r_out
    if op in ("act", "add", "pool"):
        return c_a * r * r
    if op == "se":
        return c_a * r * r + c_a * 64
    if op == "fc":
        return c_a * r * r + c_a * extra
    raise ValueError(f"op: expected one of {', '.join(OP_KINDS)}, got {op!r}")
