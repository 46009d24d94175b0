"""Benchmark: five-budget Pareto run on the mb-29m template (target ≤ 30 s wall on 2 cores); prints time and hypervolume."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from deepmad_evo.config import load_config
from deepmad_evo.pareto import Sweep, budget_points, run_pareto, scaled_params

BUDGETS = (0.4e9, 1.8e9, 4.5e9, 8.7e9, 15.4e9)
TARGET_SECONDS = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="mb-29m")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="also run the NSGA-II sweep over 0.4G–15.4G")
    parser.add_argument("--out", default=None, help="keep the run directory here (default: a temporary one)")
    args = parser.parse_args()

    cfg = load_config(args.config)
    points = budget_points(cfg, BUDGETS)
    sweep = Sweep(BUDGETS[0], BUDGETS[-1], scaled_params(cfg, BUDGETS[-1])) if args.sweep else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        t0 = time.perf_counter()
        run = run_pareto(cfg, points, out=out, jobs=args.jobs, sweep=sweep)  # a fresh dir: nothing reused
        wall = time.perf_counter() - t0

    print(f"pareto benchmark: {cfg.name}, {len(points)} budgets, jobs {args.jobs}, {os.cpu_count()} cores, "
          f"load average at start {load:.2f}")
    print(f"{'budget':>7} {'objective':>10} {'MACs':>14} {'params':>11} {'rho':>6} {'from':>6} {'search s':>9}")
    for p in run["points"]:
        print(f"{p['label']:>7} {p['objective']:10.2f} {p['macs']:14,.0f} {p['params']:11,.0f} {p['rho']:6.3f} "
              f"{p['source']:>6} {p['seconds']:9.2f}")
    hv = run["hypervolume"]
    print(f"hypervolume {hv['points']:.6g} (reference: objective 0, MACs {hv['reference']['macs']:.4g}, "
          f"params {hv['reference']['params']:.4g})")
    if sweep is not None:
        s = run["sweep"]
        print(f"sweep: {len(s['front'])} front points, hypervolume {hv['front']:.6g}, {s['seconds']:.1f} s")
        for c in s["comparison"]:
            if c["front_best"] is None:
                print(f"  {c['label']:>6}: per-budget {c['objective']:.2f}, no front point within this budget")
            else:
                print(f"  {c['label']:>6}: per-budget {c['objective']:.2f}, front best {c['front_best']:.2f}, "
                      f"margin {c['margin']:+.2f}")
        print(f"sweep CPU {s['cpu_seconds']:.1f} s")
    # CPU seconds do not depend on what else runs on the machine: schedule them on `jobs` idle
    # workers in submission order (sweep first) to estimate the wall time of an unloaded machine.
    cpu = ([run["sweep"]["cpu_seconds"]] if sweep is not None else []) + [p["cpu_seconds"] for p in run["points"]]
    workers = [0.0] * max(1, args.jobs)
    for c in cpu:
        workers[workers.index(min(workers))] += c
    print(f"search CPU {sum(cpu):.1f} s in total; on {args.jobs} idle cores the searches would take {max(workers):.1f} s")
    print(f"wall {wall:.1f} s (target <= {TARGET_SECONDS:.0f} s on 2 cores): {'OK' if wall <= TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
