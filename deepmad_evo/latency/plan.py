"""Which ops a search space needs timed: slices of ``ops.py`` kinds on geometric channel grids.

A template fixes every unit's block family, stride and feature-map side, so the ops a space can
run differ only in channels and kernel. For each (op, kernel, stride, side, extra) slice the plan
takes a geometric grid (ratio ``GRID_RATIO``, multiples of 8) over the channel range the space
allows there, and drops the 2-D cells whose work exceeds ``MAX_WORK`` (the model extrapolates
those at constant time per MAC: large convs are compute-bound). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..space import SearchSpace
from .ops import activation_of, block_ops, classifier_ops, head_ops, stem_ops, work

GRID_RATIO = 2.0
# Largest work (batch × MACs or elements) timed per op; one such op takes ~10–30 ms on one CPU core.
MAX_WORK = {"cpu": 1.5e8, "cuda": 4e9}


@dataclass(frozen=True)
class Cell:
    """One op to time: slice key plus channels."""

    op: str
    k: int
    s: int
    r: int
    extra: object
    c_a: int
    c_b: int = 0

    @property
    def key(self) -> tuple:
        return (self.op, self.k, self.s, self.r, self.extra, self.c_a, self.c_b)

    @property
    def work(self) -> float:
        return float(work(self.op, self.k, self.s, self.r, self.extra, self.c_a, self.c_b))


def grid(lo: int, hi: int, ratio: float = GRID_RATIO) -> list[int]:
    """Geometric points from ``lo`` to ``hi`` (both included), multiples of 8 above 8."""
    pts = [int(lo)]
    v = float(lo)
    while True:
        v *= ratio
        p = int(round(v / 8) * 8) if v > 8 else int(round(v))
        if p >= hi:
            break
        if p > pts[-1]:
            pts.append(p)
    if hi > pts[-1]:
        pts.append(int(hi))
    return pts


def channel_ranges(space: SearchSpace) -> dict[str, tuple[int, int]]:
    """Channel range of every symbolic channel role in the space."""
    m = space.multiple
    lo_e, hi_e = min(space.expansions), max(space.expansions)
    ch = (min(space.channels), max(space.channels))
    btn = (max(m, int(lo_e * ch[0] / m + 0.5) * m), max(m, int(hi_e * ch[1] / m + 0.5) * m))
    return {"stem": (min(space.stem_channels), max(space.stem_channels)), "out": ch, "btn": btn}


def space_ops(space: SearchSpace):
    """Every op use the space's networks can run, each channel argument the [smallest, largest] it can take.

    The channel arguments are 2-element arrays, so every op that only some networks run (an
    identity residual, its pool) is in the list, with its channel range.
    """
    t = space.template
    r_in, r_out = t.sides("torch")
    ranges = {k: np.array(v, dtype=np.int64) for k, v in channel_ranges(space).items()}
    stem, out, btn = ranges["stem"], ranges["out"], ranges["btn"]
    uses = list(stem_ops(t.in_channels, stem, t.stem_kernel, t.stem_stride, r_in[0], activation_of(t.blocks[0])))
    for i, (block, s) in enumerate(zip(t.blocks, t.strides)):
        prev = stem if i == 0 else out
        for k in space.kernels:
            uses += block_ops(block, prev, out, btn, k, s, r_in[i + 1], True)
            if space.depth_max[i] > 1:
                uses += block_ops(block, out, out, btn, k, 1, r_out[i + 1], False)
    last = out
    if t.head is not None:
        uses += head_ops(out, t.head, r_out[-1], activation_of(t.blocks[-1]))
        last = t.head
    uses += classifier_ops(last, r_out[-1], t.num_classes)
    return uses


def plan_cells(space: SearchSpace, device: str = "cpu", batch: int = 1, ratio: float = GRID_RATIO) -> list[Cell]:
    """The cells to time for ``space`` (deduplicated, in a fixed order: cheap slices first)."""

    def rng(c):
        return (int(np.min(c)), int(np.max(c)))

    axes: dict[tuple, list] = {}
    for u in space_ops(space):
        key = (u.op, int(u.k), u.s, u.r, u.extra)
        ra = rng(u.c_a)
        rb = rng(u.c_b) if u.op == "conv" else (0, 0)
        if key in axes:
            (a0, a1), (b0, b1) = axes[key]
            ra, rb = (min(a0, ra[0]), max(a1, ra[1])), (min(b0, rb[0]), max(b1, rb[1]))
        axes[key] = [ra, rb]
    cap = MAX_WORK[device] / batch
    cells = []
    for key in sorted(axes, key=lambda k: (k[0], k[1], k[2], -k[3], str(k[4]))):
        op, k, s, r, extra = key
        (a0, a1), (b0, b1) = axes[key]
        ga = grid(a0, a1, ratio)
        gb = grid(b0, b1, ratio) if op == "conv" else [0]
        slice_cells = [Cell(op, k, s, r, extra, a, b) for a in ga for b in gb]
        kept = [c for c in slice_cells if c.work <= cap]
        # Always time the smallest cell, so every slice has a point to extrapolate from.
        cells += kept or slice_cells[:1]
    return cells


def random_networks(cfg, n: int, seed: int, spread: float = 16.0):
    """``n`` random feasible networks of a config's space: MAC budgets log-uniform in [B/spread, B].

    Each is drawn by ``search.feasible_samples`` (a random vector shrunk to its budget boundary), so
    the networks span sizes, widths, kernels and depths as designs of that space do. With no MAC
    budget in the config, plain uniform vectors are drawn.
    """
    import numpy as np

    from ..problem import Budget, DeepMADProblem
    from ..search import feasible_samples

    space = cfg.search_space()
    rng = np.random.default_rng([seed, n, 1])
    b = cfg.budget
    out = []
    for _ in range(n):
        if b.macs is None:
            out.append(space.genotype(space.repair_monotone(space.sample(1, rng))[0]))
            continue
        f = float(np.exp(rng.uniform(-np.log(spread), 0.0)))
        budget = Budget(rho=b.rho, macs=b.macs * f, params=None if b.params is None else b.params * f,
                        max_layers=b.max_layers, monotone=b.monotone)
        problem = DeepMADProblem(space, budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
        out.append(space.genotype(feasible_samples(problem, 1, rng)[0]))
    return out
