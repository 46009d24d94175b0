"""Branch and bound over the depths: a bound on the discrete optimum with integral depths."""

from __future__ import annotations

import heapq
import math
import time
from typing import Callable

import numpy as np

from .relaxation import FEASIBILITY_TOLERANCE, Relaxation

Callback = Callable[[dict], None]


def depth_branch_and_bound(relax: Relaxation, z_root: np.ndarray, incumbent: float, max_nodes: int,
                           max_evaluations: int = 150, callback: Callback | None = None
                           ) -> tuple[dict, np.ndarray | None]:
    """Bound the problem with integral depths: branch on the most fractional relaxed depth.

    Each node is the relaxation with integer bounds on the depths, solved by SLSQP warm-started
    from its parent. A node whose relaxed optimum is ≤ ``incumbent`` (the best discrete objective
    known) holds no better discrete genotype and is pruned; a node whose optimum has integral
    depths is a leaf. The bound on the discrete optimum is the largest of the incumbent, the
    leaves and the nodes left open when ``max_nodes`` solves are spent. Nodes SLSQP cannot make
    feasible are pruned too (counted: a local solver's failure is not a certificate).
    ``callback`` gets a progress dict after every node.

    Returns:
        ({bound, incumbent, nodes, open, leaves, pruned_infeasible, complete, best_leaf, seconds},
        the best leaf's point or None).
    """
    t0 = time.perf_counter()
    di = relax.i_depth
    root = float(relax.values(z_root[None], gradients=False).objective[0])
    heap = [(-root, 0, relax.lower.copy(), relax.upper.copy(), z_root)]
    count = nodes = infeasible = 0
    leaves: list[tuple[float, np.ndarray]] = []
    while heap and nodes < max_nodes:
        if -heap[0][0] <= incumbent:
            heap = []
            break
        negv, _, lo, hi, z = heapq.heappop(heap)
        d = z[di]
        frac = np.abs(d - np.rint(d))
        i = int(np.argmax(frac))
        if frac[i] < 1e-6:
            leaves.append((-negv, z))
            continue
        for side in (0, 1):
            lo_c, hi_c = lo.copy(), hi.copy()
            if side == 0:
                hi_c[di[i]] = math.floor(d[i])
            else:
                lo_c[di[i]] = math.ceil(d[i])
            zc, _ = relax.solve(z, lower=lo_c, upper=hi_c, max_evaluations=max_evaluations)
            nodes += 1
            feasible = relax.violation(zc)[0] <= FEASIBILITY_TOLERANCE
            v = float(relax.values(zc[None], gradients=False).objective[0])
            if callback is not None:
                callback({"phase": "depth-bound", "done": nodes, "origin": f"depth node {nodes}/{max_nodes}",
                          "kernels": relax.kernels, "objective": v, "feasible": feasible})
            if not feasible:
                infeasible += 1
                continue
            if v > incumbent:
                count += 1
                heapq.heappush(heap, (-v, count, lo_c, hi_c, zc))
    best_leaf = max(leaves, key=lambda leaf: leaf[0], default=None)
    bound = max([incumbent] + [v for v, _ in leaves] + [-h[0] for h in heap])
    info = {"bound": bound, "incumbent": incumbent, "nodes": nodes, "open": len(heap), "leaves": len(leaves),
            "pruned_infeasible": infeasible, "complete": not heap,
            "best_leaf": None if best_leaf is None else {"objective": best_leaf[0],
                                                         "depth": [int(round(x)) for x in best_leaf[1][di]]},
            "seconds": time.perf_counter() - t0}
    return info, None if best_leaf is None else best_leaf[1]
