"""The DeepMAD objective of one network: segment entropies, depth penalty and effectiveness ρ.

Symbols (DESIGN.md §2–§3):

====== =============================================================
w      layer width c_in·k²/g
s_u    log-std of a unit, ½·Σ ln w over its layers
c_j    output channels of segment j's last unit
r_j    output side of segment j
H_j    ln(c_j·r_j²)·Σ s_u over all units through the end of segment j
α      per-segment weights; H = Σ α_j·H_j
Q      exp(std(stage depths)), population std; objective = H − β·Q
L_j    number of layers through the end of segment j
ρ_j    L_j / exp(mean ln w over those layers); ρ = max_j ρ_j
====== =============================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .costs import Costs, block_cost, check_convention, classifier_cost, convs_cost, network_costs
from .genotype import Genotype
from .limits import finite
from .units import Conv, Network, block_convs, expand

DEFAULT_BETA = 10.0
LAST_SEGMENT_WEIGHT = 8.0


def default_alpha(num_segments: int) -> tuple[float, ...]:
    """α = (1, …, 1, 8): weight 8 on the last segment."""
    return (1.0,) * (num_segments - 1) + (LAST_SEGMENT_WEIGHT,)


def check_alpha(alpha: Sequence[float] | None, num_segments: int) -> tuple[float, ...]:
    if alpha is None:
        return default_alpha(num_segments)
    alpha = tuple(finite(a, "alpha") for a in alpha)
    if len(alpha) != num_segments:
        raise ValueError(
            f"alpha: expected {num_segments} weights (one per segment), got {len(alpha)}: {list(alpha)}"
        )
    return alpha


def weighted_depth_penalty(depths, beta: float = DEFAULT_BETA):
    """β·Q with Q = exp(std(d)), population std over the last axis."""
    return beta * np.exp(np.std(np.asarray(depths, dtype=float), axis=-1))


def segment_terms(sum_lnw, layers, channels, area, alpha):
    """α_j·H_j and ρ_j from the prefix sums through the end of segment j (DESIGN.md §2–§3).

    H_j = ln(c_j·r_j²)·½·Σ ln w and ρ_j = L_j / exp(Σ ln w / L_j), the sums running over every
    main-path layer from the input to the segment's end. The one place these formulas live:
    scalars (one network), arrays (a population) and duals (the relaxation) alike.

    Args:
        sum_lnw: Σ ln w through the end of the segment.
        layers: L_j, the number of those layers.
        channels, area: c_j and r_j², the segment's output channels and feature-map area.
        alpha: α_j.

    Returns:
        (α_j·H_j, ρ_j).
    """
    return alpha * np.log(channels * area) * 0.5 * sum_lnw, prefix_rho(sum_lnw, layers)


def prefix_rho(sum_lnw, layers):
    """ρ of a prefix of the network that ends anywhere (a stage inside a segment): L / exp(Σ ln w / L)."""
    return layers / np.exp(sum_lnw / layers)


@dataclass(frozen=True)
class Evaluation:
    """Everything the objective and the constraints read, for one network."""

    entropy_terms: tuple[float, ...]  # α_j·H_j
    entropy: float
    weighted_depth_penalty: float  # β·Q
    objective: float
    rho_prefix: tuple[float, ...]
    rho: float
    layers: int
    segment_layers: tuple[int, ...]
    segment_sides: tuple[int, ...]
    segment_channels: tuple[int, ...]
    unit_log_std: tuple[float, ...]
    alpha: tuple[float, ...]
    beta: float
    costs: Costs = field(repr=False)

    @property
    def macs(self):
        return self.costs.macs

    @property
    def params(self):
        return self.costs.params


def evaluate(genotype: Genotype | Network, alpha: Sequence[float] | None = None, beta: float = DEFAULT_BETA,
             convention: str = "torch") -> Evaluation:
    """Score one network, layer by layer from its expanded units.

    Args:
        genotype: a genotype or an already expanded network.
        alpha: per-segment entropy weights; default (1, …, 1, 8).
        beta: weight of the depth-uniformity penalty.
        convention: cost convention, ``torch`` or ``tinynas``.

    Returns:
        An ``Evaluation``.
    """
    net = genotype if isinstance(genotype, Network) else expand(genotype)
    alpha = check_alpha(alpha, net.num_segments)
    beta = finite(beta, "beta")
    unit_s = [0.5 * sum(math.log(c.width) for c in u.layers) for u in net.units]
    terms, rhos, seg_layers = [], [], []
    cum_lnw = 0.0
    cum_L = 0
    units = net.units
    for i, (u, s_u) in enumerate(zip(units, unit_s)):
        cum_lnw += 2.0 * s_u
        cum_L += len(u.layers)
        if i == len(units) - 1 or units[i + 1].segment != u.segment:
            term, rho = segment_terms(cum_lnw, cum_L, u.c_out, u.r_out ** 2, alpha[u.segment])
            terms.append(float(term))
            rhos.append(float(rho))
            seg_layers.append(cum_L)
    H = float(sum(terms))
    penalty = float(weighted_depth_penalty([st.depth for st in net.genotype.stages], beta))
    return Evaluation(
        entropy_terms=tuple(terms), entropy=H, weighted_depth_penalty=penalty, objective=H - penalty,
        rho_prefix=tuple(rhos), rho=max(rhos), layers=cum_L, segment_layers=tuple(seg_layers),
        segment_sides=tuple(net.segment_sides()), segment_channels=tuple(net.segment_channels()),
        unit_log_std=tuple(unit_s), alpha=alpha, beta=float(beta), costs=network_costs(net, convention),
    )


def _product(values):
    out = 1.0
    for v in values:
        out = out * v
    return out


@dataclass(frozen=True)
class PopulationEvaluation:
    """Objective, constraints' raw values and costs for N networks (arrays over the first axis)."""

    objective: np.ndarray
    entropy: np.ndarray
    weighted_depth_penalty: np.ndarray  # β·Q
    rho: np.ndarray
    rho_prefix: np.ndarray  # (N, segments)
    entropy_terms: np.ndarray  # (N, segments), α_j·H_j
    layers: np.ndarray
    macs: np.ndarray
    params: np.ndarray


def evaluate_population(template, stem, out, btn, kernel, depth, alpha: Sequence[float] | None = None,
                        beta: float = DEFAULT_BETA, convention: str = "torch") -> PopulationEvaluation:
    """Score N networks of one template at once, stage by stage in closed form.

    A stage of depth d is its first block plus d − 1 identical repeats (c_in = out, stride 1),
    so every sum over blocks is first + (d − 1)·repeat — the per-block arithmetic is the same
    ``units.block_convs`` / ``costs.block_cost`` the single-network path uses. Inputs may be
    integer (exact costs) or real (the continuous relaxation).

    Args:
        template: the ``space.Template`` the networks share.
        stem: stem output channels, shape (N,).
        out, btn, kernel, depth: per-stage values, shape (N, S).
        alpha, beta, convention: as for ``evaluate``.

    Returns:
        A ``PopulationEvaluation``.
    """
    check_convention(convention)
    S = template.num_stages
    alpha = np.asarray(check_alpha(alpha, template.num_segments))
    beta = finite(beta, "beta")
    r_in, r_out = template.sides(convention)
    r_ent = template.sides("torch")[1]  # entropy always uses the true (integer) sides

    stem_conv = Conv(template.in_channels, stem, template.stem_kernel, template.stem_stride)
    macs, params = convs_cost((stem_conv,), r_in[0], r_out[0], convention)
    # Per unit group (stem, each stage, head): Σ ln w, number of layers, output channels, side.
    lnw = [np.log(stem_conv.width)]
    nl = [1]
    chans = [stem]
    sides = [r_ent[0]]
    c_prev = stem
    for i in range(S):
        block, s = template.blocks[i], template.strides[i]
        o, t, k, d = out[:, i], btn[:, i], kernel[:, i], depth[:, i]
        first = block_convs(block, c_prev, o, t, k, s)
        rep = block_convs(block, o, o, t, k, 1)
        # One log per block: Σ ln w = ln Π w (widths stay far below float64 overflow).
        lnw.append(np.log(_product(c.width for c in first)) + (d - 1) * np.log(_product(c.width for c in rep)))
        nl.append(len(first) * d)
        mf, pf = block_cost(block, c_prev, o, t, k, s, r_in[i + 1], r_out[i + 1], True, convention)
        mr, pr = block_cost(block, o, o, t, k, 1, r_out[i + 1], r_out[i + 1], False, convention)
        macs = macs + mf + (d - 1) * mr
        params = params + pf + (d - 1) * pr
        chans.append(o)
        sides.append(r_ent[i + 1])
        c_prev = o
    seg = [0, *template.stage_segments]
    if template.head is not None:
        head = Conv(c_prev, template.head, 1, 1)
        m, p = convs_cost((head,), r_out[-1], r_out[-1], convention)
        macs, params = macs + m, params + p
        lnw.append(np.log(head.width) + np.zeros_like(lnw[0]))
        nl.append(1)
        chans.append(template.head)
        sides.append(r_ent[-1])
        seg.append(seg[-1])
        c_prev = template.head
    m, p = classifier_cost(c_prev, template.num_classes, convention)
    macs, params = macs + m, params + p

    n = len(np.asarray(stem))
    ends = [g for g in range(len(seg)) if g == len(seg) - 1 or seg[g + 1] != seg[g]]
    # Running prefix sums over the unit groups (a handful of array adds beats cumsum on (N, G)).
    cum_lnw, cum_L, terms, rhos, L_end = 0.0, 0, [], [], []
    for g in range(len(seg)):
        cum_lnw = cum_lnw + lnw[g]
        cum_L = cum_L + nl[g]
        if g in ends:
            term, rho = segment_terms(cum_lnw, cum_L, chans[g], float(sides[g]) ** 2, alpha[len(terms)])
            terms.append(np.broadcast_to(term, (n,)))
            rhos.append(np.broadcast_to(rho, (n,)))
            L_end.append(np.broadcast_to(cum_L, (n,)))
    terms, rho_prefix, L_end = np.column_stack(terms), np.column_stack(rhos), np.column_stack(L_end)
    H = terms.sum(axis=1)
    penalty = weighted_depth_penalty(depth, beta)
    return PopulationEvaluation(objective=H - penalty, entropy=H, weighted_depth_penalty=penalty,
                                rho=rho_prefix.max(axis=1),
                                rho_prefix=rho_prefix, entropy_terms=terms, layers=L_end[:, -1],
                                macs=np.broadcast_to(macs, (n,)), params=np.broadcast_to(params, (n,)))
