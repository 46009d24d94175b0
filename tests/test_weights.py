"""Weights that travel: safetensors + config.json round trips, and loading that never unpickles."""

import json
import pickle
import struct

import pytest
import torch
from torch import nn

from deepmad_evo import build_model  # noqa: E402
from deepmad_evo.genotype import load_genotype  # noqa: E402
from deepmad_evo.models import get_genotype, get_model  # noqa: E402
from deepmad_evo.model import load_model  # noqa: E402
from deepmad_evo.weights import load_weights, read_config, save_weights  # noqa: E402

pytestmark = pytest.mark.torch
SMALL = load_genotype("i40_c3_n6 stem_k3_s2_c8 basic_d2_k3_s2_b8_c16 mbse_d2_k5_s2_b32_c24 head_c48")


def _trained_like(model):
    """Weights that are not the initialisation: random BN statistics and affine terms."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = _trained_like(build_model(SMALL))
    save_weights(model, tmp_path / "w", preprocessing={"mean": (0.5, 0.5, 0.5), "crop_pct": 1.0})
    x = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        ref = model(x)
        for loaded in (load_model(tmp_path / "w"), build_model(SMALL, weights=tmp_path / "w"),
                       build_model(SMALL, weights=tmp_path / "w" / "model.safetensors")):
            assert torch.equal(loaded.eval()(x), ref)
    fresh = build_model(SMALL).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(x), ref)  # the comparison above can fail
    loaded = load_model(tmp_path / "w")
    assert loaded.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and loaded.pretrained_cfg["crop_pct"] == 1.0
    assert loaded.genotype == SMALL


def test_hub_folder_layout(tmp_path):
    model = build_model(SMALL, num_classes=4)
    save_weights(model, tmp_path, extra={"dataset": "fake"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    raw = (tmp_path / "model.safetensors").read_bytes()
    header = json.loads(raw[8: 8 + struct.unpack("<Q", raw[:8])[0]])  # the safetensors format: length + JSON
    assert header["__metadata__"] == {"format": "pt"}
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    config = read_config(tmp_path)
    assert config["num_classes"] == 4 and config["num_features"] == 48 and config["global_pool"] == "avg"
    assert config["pretrained_cfg"]["input_size"] == [3, 40, 40]
    assert config["deepmad_evo"]["genotype"] == SMALL.to_dict() and config["deepmad_evo"]["dataset"] == "fake"


def test_other_classifier_width_keeps_the_rest(tmp_path):
    torch.manual_seed(0)
    model = _trained_like(build_model(SMALL))
    save_weights(model, tmp_path)
    other = build_model(SMALL, num_classes=3)
    report = load_weights(other, tmp_path)
    assert report.reinitialised == ("classifier.weight", "classifier.bias")
    for k, v in other.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, model.state_dict()[k])
    backbone = build_model(SMALL, features_only=True, out_indices=(1, 2), weights=tmp_path).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 40, 40)
        assert torch.equal(backbone(x)[-1], model.forward_intermediates(x, indices=[2], intermediates_only=True)[0])


def test_another_network_is_refused(tmp_path):
    save_weights(build_model(SMALL), tmp_path)
    wider = load_genotype(SMALL.to_text().replace("c48", "c56"))
    with pytest.raises(ValueError, match="another network .*head.0.weight"):
        build_model(wider, weights=tmp_path)


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "model.pt").write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(ValueError, match="not loaded"):
        build_model(SMALL, weights=tmp_path / "model.pt")
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        build_model(SMALL, weights=tmp_path / "evil")
    assert not marker.exists()
    with pytest.raises(ValueError, match="holds no model.safetensors"):
        build_model(SMALL, weights=tmp_path)
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path / "evil")


def test_get_model_takes_weights(tmp_path):
    torch.manual_seed(0)
    model = _trained_like(get_model("tiny"))
    save_weights(model, tmp_path)
    again = get_model("tiny", weights=tmp_path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.genotype == get_genotype("tiny")
