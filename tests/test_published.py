"""The authors' published DeepMAD networks: shipped verbatim, registered as zoo names, read with the reference reader."""

from __future__ import annotations

import ast
import json

import pytest

from deepmad_evo.genotype import load_genotype
from deepmad_evo.models import get_genotype, list_models, published_index, resolve_genotype
from deepmad_evo.objective import evaluate
from deepmad_evo.resources import published_dir

# Every DeepMAD structure the reference repository publishes (configs/classification/models/deepmad-*.txt).
NAMES = ["deepmad-29m-224-published", "deepmad-29m-288-published", "deepmad-50m-published",
         "deepmad-89m-published", "deepmad-r18-published", "deepmad-r34-published", "deepmad-r50-published"]


def test_every_published_network_is_a_zoo_name():
    assert sorted(published_index()) == NAMES
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
def test_files_are_the_reference_literal(name):
    entry = published_index()[name]
    text = (published_dir() / entry["file"]).read_text()
    literal = ast.literal_eval(text)
    assert literal["space_arch"] == "CnnNet"
    blocks = literal["best_structures"][0]
    g = get_genotype(name)
    assert g.image_size == entry["image_size"]
    # The reader keeps every number of the literal: stem, stages (L = depth) and head.
    assert (g.stem.out, g.stem.k, g.stem.s) == (blocks[0]["out"], blocks[0]["k"], blocks[0]["s"])
    stages = [b for b in blocks if "L" in b]
    assert [(st.out, st.btn, st.k, st.s, st.depth) for st in g.stages] == \
        [(b["out"], b["btn"], b["k"], b["s"], b["L"]) for b in stages]
    assert {st.block for st in g.stages} == {entry["block"]}
    tail = blocks[-1] if "L" not in blocks[-1] and len(blocks) > 1 else None
    assert (g.head.out if g.head else None) == (tail["out"] if tail else None)


def test_r18_by_zoo_name_is_the_design_golden_example():
    # DESIGN.md §5: published DeepMAD-R18, tinynas convention, α = (1,1,1,1,8), β = 10.
    ev = evaluate(resolve_genotype("deepmad-r18-published"), alpha=(1, 1, 1, 1, 8), beta=10, convention="tinynas")
    assert ev.objective == pytest.approx(31661.31351721937, rel=1e-9)
    assert ev.rho == pytest.approx(0.2990955537315473, rel=1e-9)
    assert (ev.macs, ev.params) == (1837323208, 11153088)


def test_29m_288_is_read_at_its_image_size():
    g224 = load_genotype(published_dir() / "deepmad-29M-288.txt")
    g288 = get_genotype("deepmad-29m-288-published")
    assert (g224.image_size, g288.image_size) == (224, 288)
    assert g288.stages == g224.stages
    assert resolve_genotype("deepmad-29m-288-published", image_size=320).image_size == 320


@pytest.mark.parametrize("name", NAMES)
def test_budgets_recorded_from_the_search_configs(name):
    entry = published_index()[name]
    b = entry["budget"]
    expected = {"r18": (1.82e9, 11.69e6, 0.3), "r34": (3.68e9, 21.80e6, 0.3), "r50": (4.13e9, 25.55e6, 0.3),
                "29m": (4.5e9, 29e6, 0.5), "50m": (8.7e9, 50e6, 0.5), "89m": (15.4e9, 89e6, 0.5)}
    key = name.split("-")[1]
    assert (b["macs"], b["params"], b["rho"]) == expected[key]
    assert b["convention"] == "tinynas"
    ev = evaluate(get_genotype(name), convention="tinynas")
    # Each network meets its own budgets, except DeepMAD-R18's MACs (1.837 G > 1.82 G, DESIGN.md §5).
    assert ev.rho <= b["rho"] + 1e-9 and ev.params <= b["params"]
    assert (ev.macs <= b["macs"]) == (name != "deepmad-r18-published")


def test_registry_points_at_the_reference_repository():
    doc = json.loads((published_dir().parent / "published.json").read_text())
    assert doc["repository"].endswith("alibaba/lightweight-neural-architecture-search")
    for entry in doc["models"].values():
        assert entry["source"] == "configs/classification/models/" + entry["file"]
