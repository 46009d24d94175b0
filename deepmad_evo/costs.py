"""MACs and parameter counts from the expanded spec, in two exact conventions (DESIGN.md §4).

- ``torch``: exactly what the decoded ``nn.Module`` has — every Conv2d's c_in·c_out·k²/g·h·w
  (SE convs included), the classifier's in·out; params = every parameter (BN γ/β, SE and
  classifier biases included).
- ``tinynas``: the reference implementation's accounting — float sides r/s, each conv+BN has
  p = weights + 2·c_out params and p·r² MACs, each activation c·r² MACs, average pools c·r²,
  SE params only, no classifier.

The functions are plain arithmetic over ints or numpy arrays, so the population evaluator and
the continuous relaxation call the very same code as the single-genotype path.
"""

from __future__ import annotations

from dataclasses import dataclass

from .limits import LimitError
from .units import AvgPool, BlockOps, Conv, Network, block_ops, expand

CONVENTIONS = ("torch", "tinynas")


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {', '.join(CONVENTIONS)}, got {convention!r}")
    return convention


def conv_cost(conv: Conv, side, convention: str):
    """(MACs, params) of one conv+BN whose output side is ``side``."""
    params = conv.weight_count + 2 * conv.c_out
    if convention == "torch":
        return conv.weight_count * side * side, params
    # tinynas: BN params are counted as MACs too, plus the activation on the output.
    return (params + conv.c_out) * side * side, params


def convs_cost(convs, r_in, r_out, convention: str):
    """(MACs, params) of a chain of convs: those before the strided conv run at ``r_in``, the rest at ``r_out``."""
    macs = params = 0
    side = r_in
    for conv in convs:
        if conv.s == 2:
            side = r_out
        m, p = conv_cost(conv, side, convention)
        macs, params = macs + m, params + p
    return macs, params


def ops_cost(ops: BlockOps, r_in, r_out, convention: str):
    """(MACs, params) of one block's ops: main path, shortcut (projection, pooling) and SE (DESIGN.md §4)."""
    macs, params = convs_cost(ops.main, r_in, r_out, convention)
    for op in ops.shortcut:
        if isinstance(op, Conv):  # the projection runs on the pooled (output-side) map
            m, p = conv_cost(op, r_out, convention)
            macs, params = macs + m, params + p
    for op in ops.shortcut:
        if isinstance(op, AvgPool) and convention == "tinynas":  # torch counts no MACs for pooling
            macs = macs + op.active * op.channels * r_in * r_in
    if ops.se is not None:
        btn, se = ops.se
        if convention == "torch":
            # fc1 (btn->se) and fc2 (se->btn) are 1x1 convs with bias on a 1x1 map.
            macs = macs + 2 * btn * se
            params = params + 2 * btn * se + se + btn
        else:
            params = params + btn * se + 2 * se + se * btn + 2 * btn
    return macs, params


def block_cost(block: str, c_in, out, btn, k, s: int, r_in, r_out, first: bool, convention: str):
    """(MACs, params) of one block from its op list (``units.block_ops``); ints or arrays alike."""
    return ops_cost(block_ops(block, c_in, out, btn, k, s, first), r_in, r_out, convention)


def classifier_cost(c_last, num_classes, convention: str):
    """(MACs, params) of the Linear classifier (torch only; tinynas counts none)."""
    if convention == "torch":
        return c_last * num_classes, c_last * num_classes + num_classes
    return 0, 0


def float_sides(network: Network) -> list[tuple[float, float]]:
    """Per-unit (r_in, r_out) with the tinynas float arithmetic r/s."""
    r = float(network.genotype.image_size)
    out = []
    for u in network.units:
        out.append((r, r / u.s))
        r = r / u.s
    return out


@dataclass(frozen=True)
class Costs:
    """Totals and per-unit costs of one network in one convention."""

    macs: int | float
    params: int | float
    unit_macs: tuple
    unit_params: tuple
    convention: str


def network_costs(network: Network, convention: str = "torch") -> Costs:
    """MACs and params of an expanded network, summed unit by unit.

    Args:
        network: the expanded genotype (``units.expand``).
        convention: ``torch`` (exact for the decoded module) or ``tinynas``.

    Returns:
        ``Costs`` with totals and per-unit values; the classifier is included in the totals
        (torch) but in no unit.
    """
    check_convention(convention)
    sides = float_sides(network) if convention == "tinynas" else [(u.r_in, u.r_out) for u in network.units]
    um, up = [], []
    for u, (r_in, r_out) in zip(network.units, sides):
        m, p = ops_cost(u.ops, r_in, r_out, convention)
        um.append(m)
        up.append(p)
    g = network.genotype
    cm, cp = classifier_cost(network.out_channels, g.num_classes, convention)
    macs, params = sum(um) + cm, sum(up) + cp
    if convention == "torch":
        macs, params = int(macs), int(params)
    return Costs(macs, params, tuple(um), tuple(up), convention)


# ---------------------------------------------------------------- memory a built network needs

def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def network_memory(genotype, batch: int = 1, training: bool = False, num_classes: int | None = None) -> int:
    """Rough upper estimate of the bytes needed to build ``genotype`` and run (or train) a batch in float32.

    Weights (×4 when training: gradients, momentum, an EMA copy) plus activations: the largest
    feature map twice for inference; every layer's output, normalised and activated, when training.
    """
    net = expand(genotype)
    params = network_costs(net, "torch").params
    classes = genotype.num_classes if num_classes is None else num_classes
    params += (classes - genotype.num_classes) * (net.out_channels + 1)
    largest = stored = 0
    for u in net.units:
        area = int(u.r_in) ** 2
        for layer in u.layers:
            size = int(layer.c_out) * area
            largest = max(largest, size, int(layer.c_in) * area)
            stored += 3 * size
    activations = stored if training else 2 * largest
    return 4 * (int(params) * (4 if training else 1) + batch * activations)


def check_memory(genotype, batch: int = 1, training: bool = False, num_classes: int | None = None,
                 field: str = "genotype") -> None:
    """Refuse, before anything is allocated, a network that cannot fit in the memory available."""
    need = network_memory(genotype, batch, training, num_classes)
    have = available_memory()
    if have is not None and need > have:
        gib = 2**30
        raise LimitError(f"{field}: {'training' if training else 'building and running'} this network needs about "
                         f"{need / gib:,.1f} GiB (batch {batch}), more than the {have / gib:,.1f} GiB available; "
                         "expected a smaller network, image size or batch")
