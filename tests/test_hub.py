"""torch.hub from a local directory: hubconf.py at the repository root."""

from pathlib import Path

import pytest
import torch

from deepmad_evo.models import get_genotype, list_models

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]


def test_hub_load_zoo_entry():
    model = torch.hub.load(str(REPO), "deepmad_r50", source="local", num_classes=10)
    assert model.genotype.to_text().split(" ", 1)[1] == get_genotype("r50").to_text().split(" ", 1)[1]
    assert model.classifier.out_features == 10
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_hub_has_one_entry_per_zoo_model_and_a_genotype_entry(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    for name in list_models():
        fn = getattr(hub, _expected_name(name))
        assert get_genotype(name).to_text() in fn.__doc__
    text = "i32_c1_n3 stem_k3_s2_c8 basic_d1_k3_s2_b8_c16"
    model = torch.hub.load(str(REPO), "deepmad", text, source="local", features_only=True)
    assert [f.shape[1] for f in model(torch.randn(1, 1, 32, 32))] == [8, 16]
    assert torch.hub.load(str(REPO), "deepmad", "tiny", source="local").genotype == get_genotype("tiny")


def _expected_name(zoo):
    """r50 -> deepmad_r50, mb-29m -> deepmad_mb_29m, deepmad-29m-224-published -> deepmad_29m_224_published."""
    return "deepmad_" + (zoo[8:] if zoo.startswith("deepmad-") else zoo).replace("-", "_")
