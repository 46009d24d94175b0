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


def depth_branch_and_bound(relax: Relaxation, z_root: np.ndarray, incumbent: float, max_nodes: int,
                           max_evaluations: int = 150, callback: Callback | None = None,
                           leaf: Callable[[np.ndarray], float] | None = None, relative_gap: float = 0.0
                           ) -> tuple[dict, np.ndarray | None]:
    """Bound the problem with integral depths: best-first branching on the most fractional relaxed depth.

    Each node is the relaxation with integer bounds on the depths, solved by SLSQP warm-started
    from its parent. A node whose relaxed optimum is ≤ the incumbent (the best discrete
    objective known) holds no better discrete genotype and is pruned; a node whose optimum has
    integral depths is a leaf. ``leaf`` (optional) turns a leaf into a discrete genotype and
    returns its objective — rounding the leaf's widths — which raises the incumbent and so
    prunes more. With ``relative_gap`` > 0, nodes within that fraction of the incumbent are
    pruned as well (the standard relative-gap stop of branch and bound): the bound then also
    covers incumbent·(1 + relative_gap).

    What the bound assumes: every node's relaxed optimum is the *global* optimum of that
    node's relaxation. SLSQP is a local method; the relaxation is started at the parent's
    optimum only, so a node's value is a certified bound only if that local optimum is global
    (the multi-start agreement of ``cross_check`` is the evidence, not a proof). The bound is for
    the given per-stage kernels.

    The bound on the discrete optimum is the largest of the incumbent (× (1 + relative_gap) when
    that pruned anything), the leaves and the nodes left open when ``max_nodes`` solves are
    spent. Nodes whose smallest corner breaks a size budget hold no feasible point and are pruned
    (``pruned_too_large``); other nodes SLSQP cannot make feasible are pruned too, but counted
    apart (``pruned_infeasible``: a local solver's failure is not a certificate). ``callback``
    gets a progress dict after every node.

    Returns:
        ({bound, incumbent, nodes, open, leaves, pruned_infeasible, pruned_too_large, pruned_gap,
        relative_gap, complete, best_leaf, seconds}, the best leaf's point or None).
    """
    t0 = time.perf_counter()
    di = relax.i_depth
    root = float(relax.values(z_root[None], gradients=False).objective[0])
    heap = [(-root, 0, relax.lower.copy(), relax.upper.copy(), z_root)]
    count = nodes = infeasible = too_big = 0
    gap_pruned = False
    leaves: list[tuple[float, np.ndarray]] = []

    def threshold():
        return incumbent + relative_gap * abs(incumbent)

    while heap and nodes < max_nodes:
        if -heap[0][0] <= threshold():
            gap_pruned = gap_pruned or -heap[0][0] > incumbent
            heap = []
            break
        negv, _, lo, hi, z = heapq.heappop(heap)
        children = _branch(relax, z, lo, hi, max_evaluations)
        if children is None:
            z = integral_depths(z, relax)
            leaves.append((-negv, z))
            if leaf is not None:
                incumbent = max(incumbent, leaf(z))
            continue
        for v, feasible, lo_c, hi_c, zc in children:
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
            elif v > incumbent:
                gap_pruned = True
    best_leaf = max(leaves, key=lambda leaf: leaf[0], default=None)
    bound = max([threshold() if gap_pruned else incumbent]
                + [v for v, _ in leaves] + [-h[0] for h in heap])
    info = {"bound": bound, "incumbent": incumbent, "nodes": nodes, "open": len(heap), "leaves": len(leaves),
            "pruned_infeasible": infeasible, "pruned_too_large": too_big, "pruned_gap": gap_pruned, "relative_gap": relative_gap,
            "complete": not heap,
            "best_leaf": None if best_leaf is None else {"objective": best_leaf[0],
                                                         "depth": [int(round(x)) for x in best_leaf[1][di]]},
            "seconds": time.perf_counter() - t0}
    return info, None if best_leaf is None else best_leaf[1]
