"""Search benchmark: per preset, wall time, evaluations, vectorised genotypes/s, objective vs published.

    python benchmarks/search.py                    # every preset, seed 0
    python benchmarks/search.py --seeds 5          # also the spread over seeds 0..4
    python benchmarks/search.py --presets mb-29m r50

The authors' published networks shipped with the package (zoo names `deepmad-*-published`, each
recording the preset whose budgets it was searched under) are scored under the preset's own budgets,
α, β and convention — exactly as `run.py inspect NAME --convention …` does — and compared (their
strides may differ: deepmad-29M-224 has 1,2,2,2,2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepmad_evo.config import load_config, preset_names  # noqa: E402
from deepmad_evo.models import get_genotype, published_index  # noqa: E402
from deepmad_evo.objective import evaluate  # noqa: E402
from deepmad_evo.problem import DeepMADProblem  # noqa: E402
from deepmad_evo.search import run_search  # noqa: E402

REFERENCE = {entry["preset"]: name for name, entry in published_index().items() if entry["preset"]}


def throughput(cfg, n: int = 200_000, repeats: int = 5) -> float:
    """Genotypes per CPU-second of the vectorised evaluation (objective + constraints) on one core.

    CPU time rather than wall time, so that other work on the machine does not distort it.
    """
    space = cfg.search_space()
    problem = DeepMADProblem(space, cfg.budget, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    X = space.repair_monotone(space.sample(n, np.random.default_rng(0)))
    best = 0.0
    for _ in range(repeats):
        t = time.process_time()
        problem.evaluate_vectors(X)
        best = max(best, n / (time.process_time() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=[p for p in preset_names() if p != "tiny"])
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per preset (spread needs >= 2)")
    args = ap.parse_args()
    print(f"{'preset':8} {'seed':>4} {'wall s':>7} {'evals':>10} {'geno/s':>10} {'objective':>11} {'published':>10} "
          f"{'ratio':>7}  genotype")
    for name in args.presets:
        cfg = load_config(name)
        o = cfg.objective
        ref = None
        if name in REFERENCE:
            ref = evaluate(get_genotype(REFERENCE[name]), o.alpha, o.beta, o.convention).objective
        rate = throughput(cfg)
        settings = cfg.search_settings()
        objectives = []
        for seed in range(args.seeds):
            t = time.perf_counter()
            r = run_search(cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta, convention=o.convention,
                           settings=settings, seed=seed)
            wall = time.perf_counter() - t
            objectives.append(r.objective)
            ratio = f"{r.objective / ref:.4f}" if ref else "-"
            print(f"{name:8} {seed:>4} {wall:7.2f} {r.n_evals:>10,} {rate:>10,.0f} {r.objective:11.2f} "
                  f"{ref or float('nan'):10.2f} {ratio:>7}  {r.genotype.to_text()}", flush=True)
        if len(objectives) > 1:
            a = np.array(objectives)
            print(f"{name:8} spread over {len(a)} seeds: {(a.max() - a.min()) / a.max():.3%} "
                  f"(min {a.min():.2f}, max {a.max():.2f})", flush=True)


if __name__ == "__main__":
    main()
