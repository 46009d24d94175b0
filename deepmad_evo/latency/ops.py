"""The timed operations of a decoded network: what each unit of ``units.expand`` runs, op by op.

The latency model sums per-op latencies; the profiler times exactly these ops. Both read the
decomposition below, which mirrors ``model.py`` (eval mode: conv+BN modules, activations, SE,
residual add, ResNet-D average pool, global pool + classifier). Like ``units.block_convs`` the
functions are plain arithmetic, so channel arguments may be Python ints (one network) or numpy
arrays (a population); ``weight`` is 1 or a boolean array for ops that only some networks run
(the identity residual of a mobile block exists only where c_in == c_out).

Op kinds and their channel arguments:

=======  ==========================  =================================================
conv     c_in → c_out, k, s, r_in    dense k×k conv + BN (2-D channel grid)
convsq   c → c, k, s, r_in           dense k×k conv + BN with equal channels (bottleneck)
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

from ..genotype import MOBILE_BLOCKS

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


def stem_ops(in_channels: int, out, k: int, s: int, r: int, act: str) -> list[OpUse]:
    return [OpUse("conv", k, s, r, "", in_channels, out), OpUse("act", 0, 1, side_after(r, s), act, out)]


def head_ops(c_in, out: int, r: int, act: str) -> list[OpUse]:
    return [OpUse("conv", 1, 1, r, "", c_in, out), OpUse("act", 0, 1, r, act, out)]


def classifier_ops(c, r: int, num_classes: int) -> list[OpUse]:
    return [OpUse("fc", 0, 1, r, int(num_classes), c)]


def block_ops(block: str, c_in, out, btn, k, s: int, r_in: int, first: bool) -> list[OpUse]:
    """Ops of one block in execution order (``model.Block`` in eval mode)."""
    r_out = side_after(r_in, s)
    act = activation_of(block)
    if block in MOBILE_BLOCKS:
        ops = [OpUse("conv", 1, 1, r_in, "", c_in, btn), OpUse("act", 0, 1, r_in, act, btn),
               OpUse("dw", k, s, r_in, "", btn), OpUse("act", 0, 1, r_out, act, btn)]
        if block == "mbconv_se":
            ops.append(OpUse("se", 0, 1, r_out, act, btn))
        ops.append(OpUse("conv", 1, 1, r_out, "", btn, out))
        same = True if c_in is out else c_in == out  # identity residual (pooled when strided), DESIGN.md §7
        if s == 2:
            ops.append(OpUse("pool", 0, 2, r_in, "", c_in, weight=same))
        ops.append(OpUse("add", 0, 1, r_out, "", out, weight=same))
        return ops
    if block == "bottleneck":
        ops = [OpUse("conv", 1, 1, r_in, "", c_in, btn), OpUse("act", 0, 1, r_in, act, btn),
               OpUse("convsq", k, s, r_in, "", btn), OpUse("act", 0, 1, r_out, act, btn),
               OpUse("conv", 1, 1, r_out, "", btn, out)]
    elif block == "basic":
        ops = [OpUse("conv", k, s, r_in, "", c_in, btn), OpUse("act", 0, 1, r_out, act, btn),
               OpUse("conv", k, 1, r_out, "", btn, out)]
    else:
        raise ValueError(f"block: expected one of basic, bottleneck, mbconv, mbconv_se, got {block!r}")
    if first:  # ResNet-D projection: pool when strided, then 1x1 conv + BN
        if s == 2:
            ops.append(OpUse("pool", 0, 2, r_in, "", c_in))
        ops.append(OpUse("conv", 1, 1, r_out, "", c_in, out))
    ops += [OpUse("add", 0, 1, r_out, "", out), OpUse("act", 0, 1, r_out, act, out)]
    return ops


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
