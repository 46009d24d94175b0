"""Branch and bound over the depths: a bound on the discrete optimum with integral depths, and a greedy dive."""

from __future__ import annotations

import heapq
import math
import time
from typing import Callable

import numpy as np

from .relaxation import FEASIBILITY_TOLERANCE, Relaxation

Callback = Callable[[dict], None]


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
        children.append((float(relax.values(zc[None], gradients=False).objective[0]), feasible, lo_c, hi_c, zc))
    return children


def too_large(relax: Relaxation, lower: np.ndarray) -> bool:
    """Whether the node with these lower bounds certainly holds no feasible point.

    MACs, params and layers grow with every width and depth, so when the node's smallest corner
    breaks a size budget, every point of the node does: a certificate, unlike an SLSQP failure.
    """
    G = relax.values(np.maximum(lower, relax.lower)[None], gradients=False).constraints[0, relax.size_columns]
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


def _split(relax: Relaxation, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, grids) -> tuple | None:
    """Where to split a node: (variable, upper bound of the lower child, lower bound of the upper child) or None.

    Fractional depths come first (the most fractional one, split at floor / ceil); with
    ``grids`` (``Relaxation.grids``), once the depths are integral, the width (in log units)
    farthest from its grid's values, split between its two neighbouring grid values. Every
    discrete genotype of the node lies in one of the two children.
    """
    di = relax.i_depth
    d = z[di]
    frac = np.abs(d - np.rint(d))
    i = int(np.argmax(frac))
    if frac[i] >= 1e-6:
        return int(di[i]), math.floor(d[i]), math.ceil(d[i])
    if grids is None:
        return None
    best = None
    for j, grid in enumerate(grids):
        if grid is None or len(grid) < 2:
            continue
        k = int(np.clip(np.searchsorted(grid, z[j]), 1, len(grid) - 1))
        a, b = grid[k - 1], grid[k]
        f = min(z[j] - a, b - z[j]) / (b - a)
        if f >= 1e-6 and a >= lo[j] - 1e-12 and b <= hi[j] + 1e-12 and (best is None or f > best[0]):
            best = (f, j, a, b)
    return None if best is None else best[1:]


def depth_branch_and_bound(relax: Relaxation, z_root: np.ndarray, incumbent: float, max_nodes: int,
                           max_evaluations: int = 100, callback: Callback | None = None,
                           leaf: Callable[[np.ndarray], float] | None = None, relative_gap: float = 0.0,
                           widths: bool = False, ftol: float = 1e-10) -> tuple[dict, np.ndarray | None]:
    """Bound the problem with integral depths: best-first branching on the most fractional relaxed depth.

    Each node is the relaxation with integer bounds on the depths, solved by SLSQP (``ftol``, at
    most ``max_evaluations`` evaluations: feasible nodes of the paper presets converge in 15-60;
    a node still infeasible at the limit is pruned as uncertified, see below) warm-started
    from its parent. A node whose relaxed
    optimum is ≤ the incumbent (the best discrete objective known) holds no better discrete
    genotype and is pruned; a node whose optimum has integral depths is a leaf. ``leaf``
    (optional) turns a point with integral depths into a discrete genotype and returns its
    objective — rounding the widths — which raises the incumbent and so prunes more (each
    depth vector is rounded once). With ``widths``, a node with integral depths but widths
    between grid values is split further on the width farthest from the grid (channels ≤ one
    grid value or ≥ the next, in log units), so the leaves bound the discrete widths too, not
    only the real ones. With ``relative_gap`` > 0, nodes within that fraction of the incumbent
    are pruned as well (the standard relative-gap stop of branch and bound): the bound then also
    covers the best such node's value, at most incumbent·(1 + relative_gap).

    What the bound assumes: every node's relaxed optimum is the *global* optimum of that
    node's relaxation. SLSQP is a local method; the relaxation is started at the parent's
    optimum only, so a node's value is a certified bound only if that local optimum is global
    (the multi-start agreement of ``cross_check`` is the evidence, not a proof). The bound is for
    the given per-stage kernels.

    The bound on the discrete optimum is the largest of the incumbent, the nodes pruned by the
    relative gap, the leaves and the nodes left open when ``max_nodes`` solves are spent. Nodes
    whose smallest corner breaks a size budget hold no feasible point and are pruned
    (``pruned_too_large``); other nodes SLSQP cannot make feasible are pruned too, but counted
    apart (``pruned_infeasible``: a local solver's failure is not a certificate). ``callback``
    gets a progress dict after every node.

    Returns:
        ({bound, incumbent, nodes, open, leaves, pruned_infeasible, pruned_too_large, pruned_gap,
        relative_gap, width_splits, complete, best_leaf, seconds}, the best leaf's point or None).
    """
    t0 = time.perf_counter()
    di = relax.i_depth
    grids = relax.grids() if widths else None
    root = float(relax.values(z_root[None], gradients=False).objective[0])
    heap = [(-root, 0, relax.lower.copy(), relax.upper.copy(), z_root)]
    count = nodes = infeasible = too_big = width_splits = 0
    gap_best = -np.inf  # the best node pruned only by the relative gap (it bounds what it held)
    leaves: list[tuple[float, np.ndarray]] = []
    rounded: set[tuple[int, ...]] = set()

    def threshold():
        return incumbent + relative_gap * abs(incumbent)

    while heap and nodes < max_nodes:
        if -heap[0][0] <= threshold():
            gap_best = max(gap_best, -heap[0][0])
            heap = []
            break
        negv, _, lo, hi, z = heapq.heappop(heap)
        depths = tuple(int(x) for x in np.rint(z[di]))
        if leaf is not None and np.all(np.abs(z[di] - depths) < 1e-6) and depths not in rounded:
            rounded.add(depths)
            incumbent = max(incumbent, leaf(integral_depths(z, relax)))
            if -negv <= threshold():
                gap_best = max(gap_best, -negv)
                continue
        split = _split(relax, z, lo, hi, grids)
        if split is None:
            leaves.append((-negv, integral_depths(z, relax)))
            continue
        j, below, above = split
        width_splits += j not in di
        for side in (0, 1):
            lo_c, hi_c = lo.copy(), hi.copy()
            if side == 0:
                hi_c[j] = below
            else:
                lo_c[j] = above
            zc, _ = relax.solve(z, lower=lo_c, upper=hi_c, max_evaluations=max_evaluations, ftol=ftol)
            values = relax.values(zc[None], gradients=False)
            feasible = bool(relax.violation(zc, values)[0] <= FEASIBILITY_TOLERANCE)
            v = float(values.objective[0])
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
            else:
                gap_best = max(gap_best, v)
    best_leaf = max(leaves, key=lambda leaf: leaf[0], default=None)
    bound = float(max([incumbent, gap_best] + [v for v, _ in leaves] + [-h[0] for h in heap]))
    info = {"bound": bound, "incumbent": incumbent, "nodes": nodes, "open": len(heap), "leaves": len(leaves),
            "pruned_infeasible": infeasible, "pruned_too_large": too_big, "pruned_gap": bool(gap_best > incumbent),
            "relative_gap": relative_gap, "width_splits": width_splits, "complete": not heap,
            "best_leaf": None if best_leaf is None else {"objective": best_leaf[0],
                                                         "depth": [int(round(x)) for x in best_leaf[1][di]]},
            "seconds": time.perf_counter() - t0}
    return info, None if best_leaf is None else best_leaf[1]
