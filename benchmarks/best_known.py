"""Best-known designs per preset: very long searches, kept in benchmarks/best_known.json.

    python benchmarks/best_known.py --scale 4 --seeds 100 101     # every paper preset
    python benchmarks/best_known.py r50 mb-29m --scale 8 --seeds 7
    python benchmarks/best_known.py --add r50 "i224_c3_n1000 stem_k3_s2_c64 ..."   # offer a design found elsewhere

Each run is the preset's own search with ``chains``, ``perturbations`` and ``finish`` multiplied
by ``--scale``. A preset's entry in the table is replaced only by a strictly better feasible
genotype; the entry records the genotype's text form (verify with ``run.py inspect TEXT --config
PRESET``), its objective, and how it was found. Long: run it with ``nice -n 10``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepmad_evo.config import load_config  # noqa: E402
from deepmad_evo.genotype import Genotype, atomic_write_text  # noqa: E402
from deepmad_evo.objective import evaluate  # noqa: E402
from deepmad_evo.problem import DeepMADProblem  # noqa: E402
from deepmad_evo.search import run_search  # noqa: E402

TABLE = Path(__file__).resolve().parent / "best_known.json"
PAPER_PRESETS = ("r18", "r34", "r50", "mb-29m", "mb-50m", "mb-89m", "b0", "mbv2")


def load_table(path: Path = TABLE) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def offer(name: str, objective: float, text: str, how: str, path: Path = TABLE) -> bool:
    """Put a genotype into the table when it beats the preset's entry; True when it did."""
    table = load_table(path)
    old = table.get(name)
    if old is not None and objective <= old["objective"] + 1e-9 * abs(old["objective"]):
        return False
    table[name] = {"objective": objective, "genotype": text, "found_by": how}
    atomic_write_text(path, json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    return True


def add(name: str, text: str, how: str) -> bool:
    """Offer a design given as text: scored and checked against the preset's space and budgets here."""
    cfg = load_config(name)
    space, o = cfg.search_space(), cfg.objective
    g = Genotype.from_text(text)
    x = space.encode(g)
    if space.genotype(x) != g:
        raise SystemExit(f"{name}: the design is not on the preset's search grid")
    _, G = DeepMADProblem(space, cfg.budget, o.alpha, o.beta, o.convention).evaluate_vectors(x[None])
    if (G > 0).any():
        raise SystemExit(f"{name}: the design breaks the preset's budgets")
    return offer(name, float(evaluate(g, o.alpha, o.beta, o.convention).objective), g.to_text(), how)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("presets", nargs="*", default=list(PAPER_PRESETS))
    ap.add_argument("--scale", type=int, default=4, help="multiply chains, perturbations and finish by this")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--add", nargs=2, metavar=("PRESET", "TEXT"), help="offer one design and exit")
    ap.add_argument("--how", default="offered by hand", help="provenance recorded with --add")
    args = ap.parse_args()
    if args.add:
        print("new best" if add(*args.add, args.how) else "not better than the table's entry")
        return 0
    for seed in args.seeds:
        for name in args.presets:
            cfg = load_config(name)
            o = cfg.objective
            base = cfg.search_settings()
            settings = cfg.search_settings(chains=base.chains * args.scale,
                                           perturbations=base.perturbations * args.scale,
                                           finish=base.finish * args.scale, jobs=args.jobs)
            t = time.perf_counter()
            r = run_search(cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta, convention=o.convention,
                           settings=settings, seed=seed)
            new = r.feasible and offer(name, r.objective, r.genotype.to_text(), f"search x{args.scale} seed {seed}")
            print(f"{name:8} seed {seed:4} x{args.scale} {time.perf_counter() - t:8.1f} s {r.objective:12.3f}"
                  f"{'  new best' if new else ''}  {r.genotype.to_text()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
