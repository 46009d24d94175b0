#!/usr/bin/env python3
"""Cross-check benchmark: per preset, the GA against the continuous relaxation (bound, rounding, gap, times).

    python benchmarks/crosscheck.py                     # every preset but tiny
    python benchmarks/crosscheck.py r50 mb-29m -n 40    # chosen presets, plus the integral-depth bound

Columns: GA objective; relaxed bound (SLSQP optimum of the continuous relaxation with the GA's
kernels); gap = (relaxed − GA)/relaxed split into its depth part (relaxed − relaxed at the GA's
integer depths) and width part (the rest); the rounded relaxation's objective (round, repair,
polish), which one ``run.py --cross-check`` returns and that one's gap; with -n N the
integral-depth bound (branch and bound over the depths, at most N SLSQP nodes), its gap to the
best discrete genotype found, the nodes solved and those left open; wall times.
Targets: gap <= 1 %, cross-check <= 5 s (without -n).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepmad_evo.config import load_config, preset_names  # noqa: E402
from deepmad_evo.relax import cross_check  # noqa: E402
from deepmad_evo.search import run_search  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="presets (default: all but tiny)")
    parser.add_argument("-n", "--depth-nodes", type=int, default=0, help="integral-depth branch-and-bound nodes")
    parser.add_argument("--json", default=None, help="write the per-preset records to this file")
    args = parser.parse_args()
    presets = args.presets or [n for n in preset_names() if n != "tiny"]

    header = (f"{'preset':8s} {'GA':>10s} {'relaxed':>10s} {'gap':>7s} {'depth':>7s} {'width':>7s} "
              f"{'rounded':>10s} {'best':>6s} {'gap ret':>7s}"
              + (f" {'int-depth':>10s} {'gap*':>7s} {'nodes':>6s} {'open':>5s}" if args.depth_nodes else "")
              + f" {'SLSQP s':>8s} {'check s':>8s} {'GA s':>6s}")
    print(header)
    print("-" * len(header))
    records = {}
    for name in presets:
        cfg = load_config(name)
        o, s = cfg.objective, cfg.search
        result = run_search(cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta, convention=o.convention,
                            settings=cfg.search_settings(), seed=s.seed)
        t0 = time.perf_counter()
        cc = cross_check(result, cfg.search_space(), alpha=o.alpha, beta=o.beta, seed=s.seed,
                         depth_nodes=args.depth_nodes)
        wall = time.perf_counter() - t0
        best = "round" if cc.improved else "GA"
        returned = max(cc.ga_objective, cc.rounded_objective)
        line = (f"{name:8s} {cc.ga_objective:10.2f} {cc.relaxed_objective:10.2f} {cc.gap:7.2%} {cc.depth_gap:7.2%} "
                f"{cc.width_gap:7.2%} {cc.rounded_objective:10.2f} {best:>6s} "
                f"{(cc.relaxed_objective - returned) / cc.relaxed_objective:7.2%}")
        if args.depth_nodes:
            b = cc.depth_bound
            line += (f" {b['bound']:10.2f} {b['gap']:7.2%} {b['nodes']:6d} {b['open']:5d}" if b and "gap" in b
                     else f" {'-':>10s} {'-':>7s} {'-':>6s} {'-':>5s}")
        print(line + f" {cc.solver_seconds:8.2f} {wall:8.2f} {result.seconds:6.1f}", flush=True)
        for w in cc.warnings:
            if not w.startswith(("gap ", "the rounded relaxation")):
                print(f"  warning: {w}")
        records[name] = {**cc.to_dict(), "ga_seconds": result.seconds, "cross_check_wall_seconds": wall,
                         "ga_genotype": result.genotype.to_text()}
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
