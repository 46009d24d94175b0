"""Regenerate the model zoo: run our search on every preset in configs/ and ship the winners.

    python benchmarks/solve_zoo.py                 # every preset
    python benchmarks/solve_zoo.py r50 mb-29m      # some presets (the index keeps the others)

Each preset's own [search] settings and seed are used, so the result is reproducible; the
genotype is written to deepmad_evo/zoo/<preset>.json and its provenance (resolved config,
objective, analytic and live-module costs) to deepmad_evo/zoo/index.json, both atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepmad_evo.config import load_config, preset_names  # noqa: E402
from deepmad_evo.costs import network_costs  # noqa: E402
from deepmad_evo.genotype import save_genotype  # noqa: E402
from deepmad_evo.io import atomic_write_text  # noqa: E402
from deepmad_evo.models import INDEX, ZOO_DIR  # noqa: E402
from deepmad_evo.search import run_search  # noqa: E402
from deepmad_evo.units import expand  # noqa: E402


def solve(name: str) -> dict:
    cfg = load_config(name)
    s = cfg.search
    # The same settings as `run.py search --config <name>`, so the zoo is what the CLI finds.
    result = run_search(cfg.search_space(), cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                        convention=cfg.objective.convention, settings=cfg.search_settings(), seed=s.seed)
    if not result.feasible:
        raise SystemExit(f"{name}: the search found no feasible network; the zoo is left unchanged")
    g = result.genotype
    torch_costs = network_costs(expand(g), "torch")
    entry = {
        "file": f"{name}.json", "text": g.to_text(), "config": cfg.to_dict(), "seed": s.seed,
        "objective": result.objective, "rho": result.evaluation.rho, "convention": cfg.objective.convention,
        "macs": result.evaluation.macs, "params": result.evaluation.params,
        "torch_macs": torch_costs.macs, "torch_params": torch_costs.params,
        "evaluations": result.n_evals,
    }
    try:
        from deepmad_evo.model import verify_costs

        params, macs = verify_costs(g)
        if (params, macs) != (torch_costs.params, torch_costs.macs):
            raise SystemExit(f"{name}: live module has {params} params / {macs} MACs, closed form "
                             f"{torch_costs.params} / {torch_costs.macs}")
        entry["verified"] = True
    except ImportError:
        entry["verified"] = False
    save_genotype(g, ZOO_DIR / entry["file"])
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="preset names (default: every preset in configs/)")
    args = parser.parse_args(argv)
    names = args.presets or preset_names()
    unknown = sorted(set(names) - set(preset_names()))
    if unknown:
        parser.error(f"presets: unknown {', '.join(unknown)}; expected some of {', '.join(preset_names())}")
    index = json.loads(INDEX.read_text())["models"] if INDEX.is_file() else {}
    for name in names:
        t0 = time.perf_counter()
        entry = solve(name)
        index[name] = entry
        # Written after every preset so that an interrupted run keeps what it solved.
        atomic_write_text(INDEX, json.dumps({"format": "deepmad-evo/zoo/1", "models": dict(sorted(index.items()))},
                                            indent=1) + "\n")
        print(f"{name:8s} objective {entry['objective']:10.2f}  rho {entry['rho']:.4f}  "
              f"{entry['convention']} MACs {entry['macs'] / 1e9:.3f} G params {entry['params'] / 1e6:.2f} M  "
              f"({time.perf_counter() - t0:.1f} s)  {entry['text']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
