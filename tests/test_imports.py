"""The math core stays free of torch and rich, so import and search start fast."""

import subprocess
import sys

CORE = ["deepmad_evo", "deepmad_evo.genotype", "deepmad_evo.units", "deepmad_evo.costs", "deepmad_evo.objective", "deepmad_evo.polish",
        "deepmad_evo.space", "deepmad_evo.problem", "deepmad_evo.search", "deepmad_evo.config", "deepmad_evo.report", "deepmad_evo.pareto",
        "deepmad_evo.relax", "deepmad_evo.rebalance", "deepmad_evo.slsqp", "deepmad_evo.polish", "deepmad_evo.io", "deepmad_evo.latency", "deepmad_evo.latency.table",
        "deepmad_evo.latency.model", "deepmad_evo.latency.plan", "deepmad_evo.latency.ops", "deepmad_evo.latency.profile", "deepmad_evo.studies.sampling"]


def test_core_does_not_import_torch_or_rich():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rich', 'torchvision'))\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
