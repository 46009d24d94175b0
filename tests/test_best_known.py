"""The best-known table (benchmarks/best_known.json): every listed design is in its preset's space,
feasible under its budgets, and reaches the listed objective, recomputed here by ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepmad_evo.config import load_config
from deepmad_evo.genotype import Genotype
from deepmad_evo.objective import evaluate
from deepmad_evo.space import Template

TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "best_known.json"
PAPER_PRESETS = ("r18", "r34", "r50", "mb-29m", "mb-50m", "mb-89m", "b0", "mbv2")


def _table() -> dict:
    return json.loads(TABLE.read_text())


def test_every_paper_preset_has_an_entry():
    assert set(PAPER_PRESETS) <= set(_table())


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_listed_design_is_feasible_and_reaches_its_objective(preset):
    entry = _table()[preset]
    cfg = load_config(preset)
    space = cfg.search_space()
    g = Genotype.from_text(entry["genotype"])
    assert Template.of(g) == space.template
    assert space.genotype(space.encode(g)) == g, "the design is not on the preset's search grid"
    xl, xu = space.bounds
    x = space.encode(g)
    assert ((xl <= x) & (x <= xu)).all()
    o, b = cfg.objective, cfg.budget
    ev = evaluate(g, o.alpha, o.beta, o.convention)
    assert ev.rho <= b.rho and ev.macs <= b.macs and ev.params <= b.params
    outs = [st.out for st in g.stages]
    assert outs == sorted(outs)
    assert ev.objective == pytest.approx(entry["objective"], rel=1e-9)
