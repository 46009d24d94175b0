"""timm integration: registration, timm's own feature wrappers over our networks, pretrained_cfg, weights."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import timm  # the timm extra is part of the dev extra
from timm.models import FeatureGraphNet, FeatureListNet  # noqa: E402

import deepmad_evo.timm as dtimm  # noqa: E402
from deepmad_evo import build_model  # noqa: E402
from deepmad_evo.models import get_genotype, list_models  # noqa: E402
from deepmad_evo.weights import save_weights  # noqa: E402

pytestmark = pytest.mark.torch
REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
    return model


def test_every_zoo_model_is_registered():
    expected = {"deepmad"} | {_expected_name(n) for n in list_models()}
    assert expected <= set(timm.list_models("deepmad*"))
    assert set(dtimm.MODEL_NAMES) == expected
    assert "deepmad_r50" in timm.list_models() and "deepmad_mb_29m" in timm.list_models()
    # The authors' published networks too, without a doubled prefix.
    assert {"deepmad_r50_published", "deepmad_29m_224_published"} <= set(timm.list_models("deepmad*"))
    published = timm.create_model("deepmad_r50_published", num_classes=0)
    assert published.genotype.stages == get_genotype("deepmad-r50-published").stages


def test_issue_call_gives_timm_feature_list_net(one_thread):
    model = timm.create_model("deepmad_r50", num_classes=10, in_chans=1, drop_path_rate=0.1, features_only=True,
                              out_indices=(1, 2, 3))
    assert isinstance(model, FeatureListNet)
    ours = build_model(get_genotype("r50"), features_only=True, out_indices=(1, 2, 3))
    assert model.feature_info.channels() == ours.feature_info.channels()
    assert model.feature_info.reduction() == ours.feature_info.reduction() == [4, 8, 16]
    assert model.stem_0.in_channels == 1
    assert any(isinstance(m, torchvision_stochastic_depth()) and m.p > 0 for m in model.modules())
    feats = model(torch.randn(1, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // r, 64 // r) for c, r in
                                                    zip(ours.feature_info.channels(), ours.feature_info.reduction())]


def torchvision_stochastic_depth():
    from torchvision.ops import StochasticDepth

    return StochasticDepth


@pytest.mark.parametrize("feature_cls", ["list", "fx", "getter", "hook"])
def test_timm_feature_wrappers_equal_our_features(feature_cls, one_thread):
    torch.manual_seed(0)
    model = timm.create_model("deepmad_tiny", features_only=True, feature_cls=feature_cls).eval()
    if feature_cls == "fx":
        assert isinstance(model, FeatureGraphNet)
    ours = _randomise_bn(build_model(get_genotype("tiny"), features_only=True)).eval()
    missing, unexpected = model.load_state_dict(_timm_keys(ours.state_dict(), model), strict=False)
    assert not missing
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, want = model(x), ours(x)
    got = list(got.values()) if isinstance(got, dict) else got
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _timm_keys(state, wrapper):
    """Our keys renamed into the wrapper's (FeatureListNet flattens stem.0 -> stem_0, stages.1 -> stages_1)."""
    target = set(wrapper.state_dict())
    out = {}
    for k, v in state.items():
        for cand in (k, k.replace(".", "_", 1), "model." + k, "graph_module." + k):
            if cand in target:
                out[cand] = v
                break
    return out


def test_pretrained_cfg_from_genotype_and_data_config():
    model = timm.create_model("deepmad_tiny")
    g = get_genotype("tiny")
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, g.image_size, g.image_size) and cfg["num_classes"] == g.num_classes
    assert isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    assert isinstance(model.get_submodule(cfg["classifier"]), nn.Linear)
    assert g.to_text() in cfg["description"]
    data = timm.data.resolve_data_config({}, model=model)
    assert data == {"input_size": (3, 64, 64), "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406),
                    "std": (0.229, 0.224, 0.225), "crop_pct": 0.875, "crop_mode": "center"}
    transform = timm.data.create_transform(**data)
    from PIL import Image

    assert transform(Image.new("RGB", (90, 80))).shape == (3, 64, 64)


def test_genotype_factory_and_model_api(one_thread):
    text = "i48_c2_n6 stem_k3_s2_c8 basic_d2_k3_s2_b8_c16 mb_d1_k3_s2_b32_c24"
    model = timm.create_model("deepmad", genotype=text, num_classes=4).eval()
    assert model.genotype.to_text().startswith("i48_c2_n6") and model.pretrained_cfg["input_size"] == (2, 48, 48)
    x = torch.randn(2, 2, 48, 48)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 6, 6)
    torch.testing.assert_close(model(x), model.forward_head(feats), rtol=0, atol=0)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 24)
    final, inter = model.forward_intermediates(x)
    torch.testing.assert_close(final, feats, rtol=0, atol=0)
    assert [t.shape[1] for t in inter] == model.feature_info.channels() == [8, 16, 24]
    assert [t.shape[1] for t in model.forward_intermediates(x, indices=2, intermediates_only=True)] == [16, 24]
    assert model.get_classifier().out_features == 4
    model.reset_classifier(0)
    assert model(x).shape == (2, 24)
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 24, 6, 6)
    model.reset_classifier(9, "avg")
    assert model(x).shape == (2, 9) and model.num_classes == 9
    with pytest.raises(ValueError, match="genotype"):
        timm.create_model("deepmad")


def test_pretrained_file_and_local_dir_load_identical_weights(tmp_path, one_thread):
    torch.manual_seed(0)
    model = _randomise_bn(build_model(get_genotype("tiny"), num_classes=7)).eval()
    save_weights(model, tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        by_file = timm.create_model("deepmad_tiny", num_classes=7, pretrained=True, pretrained_cfg_overlay=dict(
            file=str(tmp_path / "model.safetensors"), num_classes=7)).eval()
        torch.testing.assert_close(by_file(x), ref, rtol=0, atol=0)
        by_dir = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
        torch.testing.assert_close(by_dir(x), ref, rtol=0, atol=0)
        # timm adapts the stem of 3-channel weights to one channel (sums over the RGB kernels).
        gray = timm.create_model(f"local-dir:{tmp_path}", pretrained=True, in_chans=1).eval()
        torch.testing.assert_close(gray.stem[0].weight, model.stem[0].weight.sum(1, keepdim=True))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "deepmad" and config["model_args"]["genotype"] == model.genotype.to_text()


def test_inspect_timm_scores_like_the_genotype(capsys):
    from deepmad_evo.cli import main

    assert main(["inspect", "timm:deepmad_tiny", "--image-size", "64", "--json"]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert main(["inspect", get_genotype("tiny").to_text(), "--json"]) == 0
    closed = json.loads(capsys.readouterr().out)
    assert (traced["macs"], traced["params"], traced["layers"]) == (closed["macs"], closed["params"], closed["layers"])
    assert traced["objective"] == pytest.approx(closed["objective"], rel=1e-12)
    assert main(["inspect", "timm:resnet_18"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_core_works_without_timm_and_safetensors(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['timm'] = None; sys.modules['safetensors'] = None\n"
        "import deepmad_evo\n"
        "from deepmad_evo.models import get_model\n"
        "m = get_model('tiny')\n"
        "try:\n    import deepmad_evo.timm\nexcept ImportError as e:\n    print('IMPORT', e)\n"
        "from deepmad_evo.weights import save_weights\n"
        "try:\n    save_weights(m, sys.argv[1])\nexcept ValueError as e:\n    print('SAVE', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("IMPORT") and "deepmad-evo[timm]" in lines[0]
    assert lines[1].startswith("SAVE") and "deepmad-evo[safetensors]" in lines[1]


def _expected_name(zoo):
    """r50 -> deepmad_r50, mb-29m -> deepmad_mb_29m, deepmad-29m-224-published -> deepmad_29m_224_published."""
    return "deepmad_" + (zoo[8:] if zoo.startswith("deepmad-") else zoo).replace("-", "_")


def test_timm_training_hooks_layer_decay_and_grad_checkpointing(one_thread):
    from timm.optim import create_optimizer_v2

    model = timm.create_model("deepmad", genotype="i32_c3_n5 stem_k3_s2_c8 basic_d2_k3_s2_b8_c16 mb_d1_k3_s2_b32_c24 "
                                                   "head_c32")
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
    # stem, 3 blocks and the head/classifier in the last layer: scales 0.5^4 ... 0.5^0.
    assert scales == pytest.approx([0.5 ** k for k in range(4, -1, -1)])
    x = torch.randn(2, 3, 32, 32)

    def grads():
        model.zero_grad()
        torch.manual_seed(0)
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    import torch.utils.checkpoint as ckpt
    from unittest import mock

    with mock.patch.object(ckpt, "checkpoint", wraps=ckpt.checkpoint) as spy:
        again = grads()
    assert spy.call_count == len(model.stages) == 2  # once per stage
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(plain, again))
