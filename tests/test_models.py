"""The shipped zoo: one solved genotype per preset, each feasible for its preset, built on demand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepmad_evo.config import load_config, preset_names
from deepmad_evo.costs import network_costs
from deepmad_evo.models import get_genotype, list_models, zoo_index
from deepmad_evo.objective import evaluate
from deepmad_evo.space import Template
from deepmad_evo.units import expand


def test_every_preset_has_a_zoo_entry():
    """A new or renamed preset needs `python benchmarks/solve_zoo.py <name>`."""
    assert sorted(zoo_index()) == preset_names()
    # Besides our own solutions, the zoo lists the authors' published networks (tests/test_published.py).
    assert set(list_models()) - set(zoo_index()) == {n for n in list_models() if n.endswith("-published")}


@pytest.mark.parametrize("name", sorted(zoo_index()))
def test_zoo_genotype_is_feasible_for_its_preset(name):
    cfg = load_config(name)
    g = get_genotype(name)
    assert Template.of(g) == cfg.template
    ev = evaluate(g, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
    b = cfg.budget
    assert ev.rho <= b.rho
    assert b.macs is None or ev.macs <= b.macs
    assert b.params is None or ev.params <= b.params
    outs = [st.out for st in g.stages]
    assert not b.monotone or outs == sorted(outs)
    entry = zoo_index()[name]
    # A stale zoo (objective or cost code changed since it was solved) fails here.
    assert entry["objective"] == pytest.approx(ev.objective, rel=1e-12)
    torch_costs = network_costs(expand(g), "torch")
    assert (entry["torch_params"], entry["torch_macs"]) == (torch_costs.params, torch_costs.macs)
    assert entry["text"] == g.to_text() and entry["verified"]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="expected one of .*r50"):
        get_genotype("resnet50")


def test_reading_the_zoo_does_not_import_torch():
    code = ("import sys\nfrom deepmad_evo import models\nmodels.get_genotype(models.list_models()[0])\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.torch
def test_get_model_builds_the_tiny_preset():
    torch = pytest.importorskip("torch")
    from deepmad_evo import models

    model = models.get_model("tiny", drop_path_rate=0.1).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: extra threads only contend
    try:
        with torch.no_grad():
            assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    finally:
        torch.set_num_threads(threads)
    backbone = models.get_model("tiny", features_only=True)
    assert [i["reduction"] for i in backbone.feature_info] == [2, 4, 8]
