"""Latency benchmark: predicted vs measured latency of held-out networks, and latency vs MAC budgets.

    python benchmarks/latency.py                                  # mb-29m, CPU batch 1 fp32 1 thread
    python benchmarks/latency.py --table latency-cpu-b1-fp32-t1.json --networks 30 --budgets 60ms 120ms
    python benchmarks/latency.py --device cuda --batch 64 --precision bf16 --threads 1

1. The table (``--table``) is reused when it exists (profiling skipped: a rerun on an idle machine
   takes a few minutes), else profiled first (its profiling time is printed).
2. ``--networks`` random decoded networks of the preset (a seed the profile's calibration never
   saw) plus every zoo network the table covers are timed for real, interleaved, ``--rounds`` each;
   the table prints predicted vs measured, the mean absolute percentage error and Spearman's rank
   correlation, with the load average during the measurement.
3. For each latency budget T: the design searched under ``--latency T`` (the preset's MAC and params
   budgets off) with the closed loop of ``run.py search`` (``latency/loop.py``: timed, re-searched
   under a tightened predicted budget while it measures over T), and the MAC-budget design of equal
   latency (its MAC budget bisected until the predicted latency of its design matches the latency
   design's *measured* latency); both are timed for real. Printed: objective, MACs, predicted and
   measured latency, measured / T, for the loop's first search (open loop) and its kept design.

Timings share the machine with whatever else runs: the load average is printed next to each
number; on CPU with one thread the clock is the thread's CPU time (see ``latency/profile.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepmad_evo.config import load_config  # noqa: E402
from deepmad_evo.io import atomic_write_text  # noqa: E402
from deepmad_evo.latency.model import LatencyModel  # noqa: E402
from deepmad_evo.latency.plan import random_networks  # noqa: E402
from deepmad_evo.latency.table import LatencyTableError, Settings, format_time, load_table, parse_time  # noqa: E402
from deepmad_evo.models import get_genotype, list_models  # noqa: E402
from deepmad_evo.objective import evaluate  # noqa: E402
from deepmad_evo.problem import Budget, DeepMADProblem  # noqa: E402
from deepmad_evo.search import InfeasibleBudgetError, run_search  # noqa: E402

GROUP = 6  # networks timed interleaved together


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def measure(genotypes, settings, rounds, seed):
    from deepmad_evo.latency.profile import Timing, measure_networks

    out = []
    for i in range(0, len(genotypes), GROUP):
        out += measure_networks(genotypes[i:i + GROUP], settings, Timing(rounds=rounds), seed=seed + i)
    return out


def search(cfg, budget, seed, chains=None):
    space = cfg.search_space()
    settings = cfg.search_settings() if chains is None else cfg.search_settings(chains=chains)
    r = run_search(space, budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                   convention=cfg.objective.convention, settings=settings, seed=seed)
    return r.genotype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mb-29m")
    ap.add_argument("--table", default=None, help="latency table (profiled here first when missing)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--networks", type=int, default=30, help="random held-out networks")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per network")
    ap.add_argument("--budgets", nargs="*", default=None,
                    help="latency budgets (default: 1/3 and 2/3 of the way, geometrically, from the smallest network's "
                         "predicted latency to the zoo design's)")
    ap.add_argument("--bisect", type=int, default=6, help="bisection steps for the equal-latency MAC budget")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the held-out networks (the profile uses 0)")
    ap.add_argument("--throughput", type=int, default=200_000, help="genotypes for the throughput measurement")
    ap.add_argument("--chains", type=int, default=None, help="search chains per design (default: the preset's)")
    ap.add_argument("--skip-accuracy", action="store_true", help="only the latency-vs-MAC budget comparison")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    cfg = load_config(args.preset)
    settings = Settings(args.device, args.batch, args.precision, args.threads)
    if settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print(f"--device cuda: no GPU here (torch {torch.__version__}); skipped")
            return
    table_path = Path(args.table or f"latency-{settings.device}-b{settings.batch}-{settings.precision}-t{settings.threads}.json")
    from deepmad_evo.latency.profile import fingerprint, profile

    if not table_path.exists():
        print(f"profiling {cfg.name} into {table_path} ({settings.describe()}) … (load {os.getloadavg()[0]:.1f})",
              flush=True)
        profile([cfg], settings, table_path)
    else:
        print(f"reusing {table_path} (profiling skipped; delete it or pass another --table to re-profile)")
    table = load_table(table_path)
    table.check_host(fingerprint(settings), settings)
    model = LatencyModel(table)
    print(f"table {table_path}: {len(table.ops)} ops + {len(table.networks)} calibration networks on "
          f"{table.device['name']} ({table.settings.describe()}), profiled in {table.profile_seconds:.0f} s at load "
          f"{np.median([v['load'] for v in table.ops.values()]):.1f} (median over ops); median op noise "
          f"{100 * table.noise:.1f} %; model form {model.form} "
          + (" ".join(f"{f}={100 * e:.1f}%" for f, e in model.selection.items()) if model.selection else ""))

    # ---------------------------------------------------------------- search throughput
    space = cfg.search_space()
    X = space.repair_monotone(space.sample(args.throughput, np.random.default_rng(0)))
    rates = {}
    for name, budget in (("without latency", cfg.budget),
                         ("with latency", replace(cfg.budget, latency=1.0, latency_table=str(table_path)))):
        problem = DeepMADProblem(space, budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
        problem.evaluate_vectors(X[:20000])  # builds the lookup tables once, as a search's first generation does
        best = 0.0
        for _ in range(5):
            t = time.process_time()
            problem.evaluate_vectors(X)
            best = max(best, len(X) / (time.process_time() - t))
        rates[name] = best
    print("vectorised evaluation (objective + constraints), genotypes per CPU-second (best of 5): "
          + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in rates.items()) + f" (load {os.getloadavg()[0]:.1f})")

    # ---------------------------------------------------------------- predicted vs measured
    summary, pred, nets, res = {}, np.zeros(0), [], []
    if not args.skip_accuracy:
        nets = [("random", g) for g in random_networks(cfg, args.networks, args.seed)]
        for name in list_models():
            g = get_genotype(name)
            try:
                model.predict(g)
            except LatencyTableError as exc:
                print(f"zoo {name}: skipped ({str(exc)[:90]}…)")
                continue
            nets.append((f"zoo {name}", g))
        t0 = time.time()
        res = measure([g for _, g in nets], settings, args.rounds, args.seed)
        pred = np.array([model.predict(g) for _, g in nets])
        meas = np.array([r["seconds"] for r in res])
        loads = [r["load"] for r in res]
        ape = np.abs(pred - meas) / meas
        print(f"\n{'network':12} {'MACs':>9} {'predicted':>10} {'measured':>10} {'noise':>6} {'error':>7} {'load':>5}")
        for (name, g), p, r, e in zip(nets, pred, res, ape):
            macs = evaluate(g, convention="torch").macs
            print(f"{name:12} {macs / 1e6:8.0f}M {format_time(p):>10} {format_time(r['seconds']):>10} "
                  f"{100 * r['noise']:5.1f}% {100 * (p - r['seconds']) / r['seconds']:+6.1f}% {r['load']:5.1f}")
        rnd = [i for i, (n, _) in enumerate(nets) if n == "random"]
        summary = {"mape": float(ape.mean()), "mape_random": float(ape[rnd].mean()), "spearman": spearman(pred, meas),
                   "spearman_random": spearman(pred[rnd], meas[rnd]), "networks": len(nets),
                   "load_median": float(np.median(loads)), "measure_seconds": time.time() - t0,
                   "profile_seconds": table.profile_seconds, "form": model.form}
        print(f"\nMAPE {100 * summary['mape']:.1f} % (random only {100 * summary['mape_random']:.1f} %), Spearman "
              f"{summary['spearman']:.3f} (random only {summary['spearman_random']:.3f}) over {len(nets)} networks; "
              f"load {summary['load_median']:.1f} (median); measured in {summary['measure_seconds']:.0f} s")

    # ---------------------------------------------------------------- latency vs MAC budgets
    b = cfg.budget
    zoo = get_genotype(cfg.name) if cfg.name in list_models() else None
    if args.budgets:
        budgets = [parse_time(t, "--budgets") for t in args.budgets]
    else:
        # A third and two thirds of the way (geometrically) from the space's smallest network to the zoo design.
        space = cfg.search_space()
        small = model.predict(space.genotype(space.bounds[0]))
        ref = model.predict(zoo) if zoo is not None else float(np.max(pred, initial=20 * small))
        budgets = [small * (ref / small) ** (1 / 3), small * (ref / small) ** (2 / 3)]
    rows = []
    from deepmad_evo.latency.loop import honour_budget

    for T in budgets:
        def lat_search(target):
            lat_budget = Budget(rho=b.rho, max_layers=b.max_layers, monotone=b.monotone, latency=target,
                                latency_table=str(table_path))
            try:
                g = search(cfg, lat_budget, 0, args.chains)
            except InfeasibleBudgetError:
                return None
            return g, evaluate(g, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention).objective, \
                model.predict(g)

        def lat_measure(g):
            return measure([g], settings, args.rounds, args.seed)[0]

        loop = honour_budget(T, lat_search, lat_measure, on_round=lambda r, nxt: print(
            f"  T {format_time(T)}: searched under {format_time(r.target)} → predicted {format_time(r.predicted)}, "
            f"measured {format_time(r.measured)} ± {100 * r.noise:.1f} % (load {r.load:.1f}), "
            f"{r.measured / T:.3f} × T{'' if nxt is None else f'; next predicted budget {format_time(nxt)}'}",
            flush=True))
        g_lat, kept = loop.genotype, loop.rounds[loop.chosen]
        m_lat = kept.measured
        # MAC budget whose design's predicted latency equals the latency design's measured latency.
        lat_macs = evaluate(g_lat, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention).macs
        lo, hi = np.log(lat_macs / 4), np.log(lat_macs * 4)
        g_mac = None
        for _ in range(args.bisect):
            mid = float(np.exp((lo + hi) / 2))
            mac_budget = replace(b, macs=mid, params=None if b.params is None or b.macs is None else b.params * mid / b.macs,
                                 latency=None, latency_table=None)
            g = search(cfg, mac_budget, 0, args.chains)
            if model.predict(g) > m_lat:
                hi = np.log(mid)
            else:
                lo, g_mac = np.log(mid), g
        if g_mac is None:
            g_mac = g
        r_mac = measure([g_mac], settings, args.rounds, args.seed)[0]
        first = loop.rounds[0]
        for kind, g, m in (("latency", g_lat, {"seconds": m_lat, "noise": kept.noise, "load": kept.load}),
                           ("MACs", g_mac, r_mac)):
            ev = evaluate(g, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
            rows.append({"budget": T, "design": kind, "objective": ev.objective, "macs": ev.macs,
                         "predicted": model.predict(g), "measured": m["seconds"], "noise": m["noise"],
                         "ratio": m["seconds"] / T, "load": m["load"], "text": g.to_text(),
                         **({"searches": len(loop.rounds), "honoured": loop.honoured,
                             "open_loop": {"objective": first.objective, "predicted": first.predicted,
                                           "measured": first.measured, "ratio": first.measured / T,
                                           "load": first.load}} if kind == "latency" else {})})
    print(f"\n{'budget':>9} {'design':12} {'objective':>10} {'MACs':>9} {'predicted':>10} {'measured':>10} "
          f"{'noise':>6} {'meas/T':>7} {'load':>5}")
    for r in rows:
        if r["design"] == "latency":
            o = r["open_loop"]
            print(f"{format_time(r['budget']):>9} {'latency, 1st':12} {o['objective']:10.2f} {'':>9} "
                  f"{format_time(o['predicted']):>10} {format_time(o['measured']):>10} {'':>6} {o['ratio']:7.3f} "
                  f"{o['load']:5.1f}")
        name = f"latency ({r['searches']})" if r["design"] == "latency" else "MACs"
        print(f"{format_time(r['budget']):>9} {name:12} {r['objective']:10.2f} {r['macs'] / 1e6:8.0f}M "
              f"{format_time(r['predicted']):>10} {format_time(r['measured']):>10} {100 * r['noise']:5.1f}% "
              f"{r['ratio']:7.3f} {r['load']:5.1f}")
    for r in rows:
        print(f"  {r['design']:8} @ {format_time(r['budget'])}: {r['text']}")
    if args.out:
        atomic_write_text(args.out, json.dumps({"summary": summary, "throughput": rates, "budgets": rows, "table": str(table_path),
                                                "networks": [{"name": n, "text": g.to_text(), "predicted": float(p),
                                                              **r} for (n, g), p, r in zip(nets, pred, res)]},
                                               indent=1) + "\n")


if __name__ == "__main__":
    main()
