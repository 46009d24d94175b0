"""Branch and bound over the depths: a bound on the discrete optimum with integral depths, and a greedy dive."""

from __future__ import annotations

import heapq
import math
import time
from typing import Callable

import numpy as np

from .lockstep import Lockstep, solve_many
from .relaxation import FEASIBILITY_TOLERANCE, Relaxation

Callback = Callable[[dict], None]
# SLSQP runs of the branch and bound solved side by side (``lockstep``): one evaluation of the
# relaxation costs about the same for 1 and for 32 points, so each node gets several times cheaper.
BATCH = 32


def _branch(relax: Relaxation, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_evaluations: int):
    """Split a node on its most fractional depth; None at a leaf, else [(value, feasible, lo, hi, z)] per child."""
    di = relax.i_depth
    d = z[di]
    frac = np.abs(d - np.rint(d))
    i = int(np.argmax(frac))
    if frac[i] < 1e-6:
        return None
    bounds = []
    for side in (0, 1):
        lo_c, hi_c = lo.copy(), hi.copy()
        if side == 0:
            hi_c[di[i]] = math.floor(d[i])
        else:
            lo_c[di[i]] = math.ceil(d[i])
        bounds.append((lo_c, hi_c))
    # Both children side by side: the same SLSQP runs as one by one, at about the cost of one.
    solved = solve_many(relax, [(z, lo_c, hi_c) for lo_c, hi_c in bounds], max_evaluations=max_evaluations)
    children = []
    for (lo_c, hi_c), (zc, _) in zip(bounds, solved):
        feasible = bool(relax.violation(zc)[0] <= FEASIBILITY_TOLERANCE)
        children.append((float(relax.values(zc[None], gradients=False).objective[0]), feasible, lo_c, hi_c, zc))
    return children


def too_large(relax: Relaxation, lower: np.ndarray, expansion: tuple | None = None) -> bool:
    """Whether the node with these lower bounds certainly holds no feasible point.

    MACs, params and layers grow with every width and depth, so when the node's smallest corner
    breaks a size budget, every point of the node does: a certificate, unlike an SLSQP failure.
    With ``expansion`` (the node's expansion index bounds) the corner's btn is at least its
    smallest expansion's hull row at the corner's channels.
    """
    corner = np.maximum(lower, relax.lower)
    if expansion is not None:
        k = np.asarray(expansion[0])
        btn = relax.expansions[k] * np.exp(corner[relax.i_out]) - relax.expansion_slack[0][k]
        corner[relax.i_btn] = np.maximum(corner[relax.i_btn], np.log(np.maximum(btn, 1e-300)))
    G = relax.values(corner[None], gradients=False).constraints[0, relax.size_columns]
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


def propagate(relax: Relaxation, box: tuple) -> tuple | None:
    """A node's bounds tightened to what its discrete genotypes can take; None when it holds none.

    ``box`` = (lower, upper, lowest expansion index, highest expansion index). Widths snap inwards
    to their grids (stem and stage channels, btn values); per stage, btn = btn(c, e) is
    non-decreasing in c and e (``Relaxation.btn_table``), so the channel, expansion and btn
    ranges shrink to the bounding box of the (c, e) pairs of the node whose btn lies in its btn
    range; monotone channels carry a stage's bounds to its neighbours. Every discrete genotype
    of the node keeps within the result: the tightening is valid, never a heuristic.
    """
    lo, hi, k_lo, k_hi = (b.copy() for b in box)
    channels = np.asarray(relax.space.channels, dtype=float)
    stems = np.asarray(relax.space.stem_channels, dtype=float)
    table = relax.btn_table
    tol = 1e-9
    a = int(np.searchsorted(stems, np.exp(lo[0]) * (1 - tol)))
    b = int(np.searchsorted(stems, np.exp(hi[0]) * (1 + tol), side="right")) - 1
    if a > b:
        return None
    lo[0], hi[0] = np.log(stems[a]), np.log(stems[b])
    c_lo = np.searchsorted(channels, np.exp(lo[relax.i_out]) * (1 - tol))
    c_hi = np.searchsorted(channels, np.exp(hi[relax.i_out]) * (1 + tol), side="right") - 1
    monotone = relax.budget.monotone
    for _ in range(2):
        if monotone:
            c_lo = np.maximum.accumulate(c_lo)
            c_hi = np.minimum.accumulate(c_hi[::-1])[::-1]
        for i in range(relax.S):
            if c_lo[i] > c_hi[i] or k_lo[i] > k_hi[i]:
                return None
            t = table[c_lo[i]:c_hi[i] + 1, k_lo[i]:k_hi[i] + 1]
            ok = (t >= np.exp(lo[relax.i_btn[i]]) * (1 - tol)) & (t <= np.exp(hi[relax.i_btn[i]]) * (1 + tol))
            rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
            if not len(rows):
                return None
            c_hi[i], c_lo[i] = c_lo[i] + rows[-1], c_lo[i] + rows[0]
            k_hi[i], k_lo[i] = k_lo[i] + cols[-1], k_lo[i] + cols[0]
            lo[relax.i_btn[i]], hi[relax.i_btn[i]] = np.log(t[ok].min()), np.log(t[ok].max())
    if monotone and np.any(np.diff(c_lo) < 0):
        c_lo = np.maximum.accumulate(c_lo)
        if np.any(c_lo > c_hi):
            return None
    lo[relax.i_out], hi[relax.i_out] = np.log(channels[c_lo]), np.log(channels[c_hi])
    return lo, hi, k_lo, k_hi


def _split(relax: Relaxation, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, expansion: tuple, grids):
    """Where to split a node: (kind, index, bound of the lower child, bound of the upper child) or None.

    Fractional depths come first (the most fractional one, split at floor / ceil: kind "z").
    With ``grids`` (``Relaxation.grids``), once the depths are integral, the width farthest from
    the grid: the stem or a stage width (in log units) between two grid values (kind "z"), or a
    stage's btn/c between the bands of two neighbouring expansions e_a < e_b of the node's range
    (kind "e": expansion ≤ e_a or ≥ e_b, as index bounds). Only when none is left, a btn between
    two btn values (kind "z"). Every discrete genotype of the node lies in one of the two children.
    """
    di = relax.i_depth
    d = z[di]
    frac = np.abs(d - np.rint(d))
    i = int(np.argmax(frac))
    if frac[i] >= 1e-6:
        return "z", int(di[i]), math.floor(d[i]), math.ceil(d[i])
    if grids is None:
        return None
    best = None
    for j, grid in enumerate(grids):
        if grid is None or len(grid) < 2:
            continue
        k = int(np.clip(np.searchsorted(grid, z[j]), 1, len(grid) - 1))
        a, b = grid[k - 1], grid[k]
        f = min(z[j] - a, b - z[j]) / (b - a)
        if f >= 1e-6 and a >= lo[j] - 1e-12 and b <= hi[j] + 1e-12:
            if best is None or f > best[0]:
                best = (f, "z", j, a, b)
    E, (s_lo, s_hi) = relax.expansions, relax.expansion_slack
    c, btn = np.exp(z[relax.i_out]), np.exp(z[relax.i_btn])
    for i in range(relax.S):
        for k in range(int(expansion[0][i]), int(expansion[1][i])):
            top, bottom = E[k] * c[i] + s_hi[k], E[k + 1] * c[i] - s_lo[k + 1]
            if top < btn[i] < bottom:
                f = min(btn[i] - top, bottom - btn[i]) / (bottom - top)
                if f >= 1e-6 and (best is None or f > best[0]):
                    best = (f, "e", i, k, k + 1)
                break
    return None if best is None else best[1:]


def depth_branch_and_bound(relax: Relaxation, z_root: np.ndarray, incumbent: float, max_nodes: int,
                           max_evaluations: int = 100, callback: Callback | None = None,
                           leaf: Callable[[np.ndarray], float] | None = None, relative_gap: float = 0.0,
                           widths: bool = False, ftol: float = 1e-10,
                           batch: int = BATCH) -> tuple[dict, np.ndarray | None]:
    """Bound the problem with integral depths: best-first branching on the most fractional relaxed depth.

    Each node is the relaxation with bounds on the depths (integers), the widths and the
    expansions, solved by SLSQP (``ftol``, at most ``max_evaluations`` evaluations: feasible
    nodes of the paper presets converge in 15-60; a node still infeasible at the limit is pruned
    as uncertified, see below) warm-started from its parent. The best open nodes are branched
    until ``batch`` children are being solved, and those SLSQP runs advance side by side
    (``lockstep``: one batched evaluation per step), so the order is best-first by batches. A
    node whose relaxed optimum is ≤ the incumbent (the best discrete objective known) holds no
    better discrete genotype and is pruned. ``leaf`` (optional) turns a relaxed point into a
    discrete genotype and returns its objective — rounding — which raises the incumbent and so
    prunes more: every solved node above the incumbent is rounded, once per depth vector (its
    depths rounded to the nearest integers), as soon as it is solved. With ``widths``, a node
    with integral depths is split further on the width farthest from its grid (stem, stage or
    btn channels ≤ one grid value or ≥ the next, in log units) or on an expansion whose btn lies
    between the hull rows of two neighbouring expansions (expansion ≤ one or ≥ the next), and
    every child's bounds are tightened to its discrete genotypes (``propagate``; a child with
    none is pruned, ``pruned_empty``), so the leaves bound the discrete widths too. With
    ``relative_gap`` > 0, nodes within that fraction of the incumbent are pruned as well (the
    standard relative-gap stop of branch and bound): the bound then also covers the best such
    node's value, at most incumbent·(1 + relative_gap).

    What the bound assumes: every node's relaxed optimum is the *global* optimum of that
    node's relaxation. SLSQP is a local method; the relaxation is started at the parent's
    optimum only, so a node's value is a certified bound only if that local optimum is global
    (the multi-start agreement of ``cross_check`` is the evidence, not a proof). A feasible node
    whose run stops before SLSQP's convergence test keeps its parent's value (``unconverged``).
    The bound is for the given per-stage kernels.

    The bound on the discrete optimum is the largest of the incumbent, the nodes pruned by the
    relative gap, the leaves and the nodes left open when ``max_nodes`` solves are spent. Nodes
    whose smallest corner breaks a size budget hold no feasible point and are pruned
    (``pruned_too_large``); other nodes SLSQP cannot make feasible, from the parent's point nor
    from the middle of the node (``retried``: the second runs, not counted in ``max_nodes``), are
    pruned too, but counted apart (``pruned_infeasible``: a local solver's failure is not a
    certificate). ``callback`` gets a progress dict after every node.

    Returns:
        ({bound, incumbent, nodes, open, leaves, pruned_infeasible, pruned_too_large, pruned_empty,
        unconverged, retried, pruned_gap, relative_gap, width_splits, complete, best_leaf, seconds}, the
        best leaf's point or None).
    """
    t0 = time.perf_counter()
    di = relax.i_depth
    grids = relax.grids() if widths else None
    root = float(relax.values(z_root[None], gradients=False).objective[0])
    full = (np.zeros(relax.S, dtype=int), np.full(relax.S, len(relax.expansions) - 1))
    heap = [(-root, 0, (relax.lower.copy(), relax.upper.copy(), *full), z_root)]
    count = nodes = started = infeasible = too_big = width_splits = empty = unconverged = retried = 0
    gap_best = -np.inf  # the best node pruned only by the relative gap (it bounds what it held)
    leaves: list[tuple[float, np.ndarray]] = []
    rounded: set[tuple[int, ...]] = set()
    pool = Lockstep(relax, ftol=ftol, max_evaluations=max_evaluations)

    def threshold():
        return incumbent + relative_gap * abs(incumbent)

    while True:
        # Branch the best open nodes until the pool holds ``batch`` children (or the node budget is spent).
        while heap and len(pool) + 2 <= max(2, batch) and started + 2 <= max_nodes:
            if -heap[0][0] <= threshold():
                gap_best = max(gap_best, -heap[0][0])
                heap = []
                break
            negv, _, box, z = heapq.heappop(heap)
            depths = tuple(int(x) for x in np.rint(z[di]))
            if leaf is not None and np.all(np.abs(z[di] - depths) < 1e-6) and depths not in rounded:
                rounded.add(depths)
                incumbent = max(incumbent, leaf(integral_depths(z, relax)))
                if -negv <= threshold():
                    gap_best = max(gap_best, -negv)
                    continue
            split = _split(relax, z, box[0], box[1], box[2:], grids)
            if split is None:
                leaves.append((-negv, integral_depths(z, relax)))
                continue
            kind, j, below, above = split
            width_splits += kind == "e" or j not in di
            for side in (0, 1):
                child = [b.copy() for b in box]
                if kind == "z":
                    child[1 - side][j] = below if side == 0 else above
                else:
                    child[3 - side][j] = below if side == 0 else above
                child = propagate(relax, child) if grids is not None else child
                if child is None:
                    empty += 1
                    continue
                pool.add((child, -negv, 0), z, child[0], child[1], expansion=(child[2], child[3]))
                started += 1
        if not len(pool):
            break
        for (child, parent, attempt), zc, status in pool.step():
            values = relax.values(zc[None], gradients=False, expansion=(child[2], child[3]))
            feasible = bool(relax.violation(zc, values)[0] <= FEASIBILITY_TOLERANCE)
            v = float(values.objective[0])
            if not feasible and not attempt and not too_large(relax, child[0], (child[2], child[3])):
                # SLSQP's failure from the parent's point is no proof: one more run from the
                # middle of the node before it is pruned as infeasible.
                retried += 1
                pool.add((child, parent, 1), (child[0] + child[1]) / 2, child[0], child[1],
                         expansion=(child[2], child[3]))
                continue
            nodes += 1
            if feasible and status["status"] != 0:
                # SLSQP stopped before converging (evaluation or iteration limit, failed line
                # search): its point may lie below the node's optimum, so the node keeps its
                # parent's value, which bounds it (the child is a subset of the parent).
                unconverged += 1
                v = max(v, parent)
            if callback is not None:
                callback({"phase": "depth-bound", "done": nodes, "origin": f"depth node {nodes}/{max_nodes}",
                          "kernels": relax.kernels, "objective": v, "feasible": feasible})
            if not feasible:
                if too_large(relax, child[0], (child[2], child[3])):
                    too_big += 1
                else:
                    infeasible += 1
                continue
            depths = tuple(int(x) for x in np.rint(zc[di]))
            if leaf is not None and v > incumbent and depths not in rounded:
                # A depth vector the incumbent does not rule out: its rounding may be the better
                # design, found before the node is popped (or even when the gap prunes it).
                rounded.add(depths)
                incumbent = max(incumbent, leaf(zc))
            if v > threshold():
                count += 1
                heapq.heappush(heap, (-v, count, child, zc))
            else:
                gap_best = max(gap_best, v)
    best_leaf = max(leaves, key=lambda leaf: leaf[0], default=None)
    bound = float(max([incumbent, gap_best] + [v for v, _ in leaves] + [-h[0] for h in heap]))
    info = {"bound": bound, "incumbent": incumbent, "nodes": nodes, "open": len(heap), "leaves": len(leaves),
            "pruned_infeasible": infeasible, "pruned_too_large": too_big, "pruned_empty": empty, "unconverged": unconverged, "retried": retried, "pruned_gap": bool(gap_best > incumbent),
            "relative_gap": relative_gap, "width_splits": width_splits, "complete": not heap,
            "best_leaf": None if best_leaf is None else {"objective": best_leaf[0],
                                                         "depth": [int(round(x)) for x in best_leaf[1][di]]},
            "seconds": time.perf_counter() - t0}
    return info, None if best_leaf is None else best_leaf[1]
