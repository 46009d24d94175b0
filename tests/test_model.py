"""The decoded nn.Module against the closed-form spec: exact costs, shapes, gradients, backbones."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision.ops import SqueezeExcitation, StochasticDepth  # noqa: E402

from deepmad_evo import build_model, expand  # noqa: E402
from deepmad_evo.costs import network_costs  # noqa: E402
from deepmad_evo.genotype import Genotype, GenotypeError, Head, Stage, Stem, save_genotype  # noqa: E402
from deepmad_evo.model import Block, verify_costs  # noqa: E402
from tests.randgeno import random_genotypes  # noqa: E402

pytestmark = pytest.mark.torch

GENOTYPES = random_genotypes(60, seed=2024)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs single-threaded (see conftest.one_thread)."""


def _live(model: nn.Module, g: Genotype) -> tuple[int, int]:
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, g.in_channels, g.image_size, g.image_size))
    return params, counter.get_total_flops() // 2


def test_random_genotypes_cover_every_case():
    """The exactness test below is only as strong as the cases it sees."""
    units = [u for g in GENOTYPES for u in expand(g).units]
    assert {u.block for u in units if u.kind == "block"} == {"basic", "bottleneck", "mbconv", "mbconv_se"}
    assert any(len({st.block for st in g.stages}) > 1 for g in GENOTYPES)
    assert {u.s for u in units} == {1, 2}
    assert any(u.r_in % 2 == 1 and u.s == 2 for u in units)  # odd side into a stride-2 unit
    assert {g.head is None for g in GENOTYPES} == {True, False}
    mobile = [u for u in units if u.block in ("mbconv", "mbconv_se")]
    assert any(u.residual and u.pooled for u in mobile)  # c_in == out with s = 2
    assert any(u.residual and not u.pooled for u in mobile)
    assert any(not u.residual for u in mobile)
    resnet = [u for u in units if u.block in ("basic", "bottleneck")]
    assert any(u.projection and u.pooled for u in resnet) and any(u.projection and not u.pooled for u in resnet)
    assert 97 in {g.image_size for g in GENOTYPES}


@pytest.mark.parametrize("index", range(len(GENOTYPES)))
def test_closed_form_costs_are_exact(index):
    g = GENOTYPES[index]
    costs = network_costs(expand(g), "torch")
    params, macs = _live(build_model(g), g)
    assert (costs.params, costs.macs) == (params, macs), g.to_text()


# Published DeepMAD structures (zoo names deepmad-*-published, in text form), at a 64-pixel input to stay fast.
PUBLISHED = (
    "i64_c3_n1000 stem_k3_s2_c32 bneck_d1_k5_s2_b40_c96 bneck_d6_k5_s2_b40_c384 bneck_d9_k5_s2_b64_c384 "
    "bneck_d10_k3_s1_b104_c1024 bneck_d12_k5_s2_b104_c672",
    "i64_c3_n1000 stem_k3_s2_c40 mbse_d2_k5_s1_b240_c40 mbse_d4_k5_s2_b512_c85 mbse_d6_k5_s2_b800_c134 "
    "mbse_d6_k5_s2_b1208_c201 mbse_d5_k5_s2_b1872_c312 head_c1792",
)


@pytest.mark.parametrize("text", PUBLISHED)
def test_published_structures_are_exact(text):
    g = Genotype.from_text(text)
    costs = network_costs(expand(g), "torch")
    assert verify_costs(g) == (costs.params, costs.macs)


@pytest.mark.parametrize("index", range(0, len(GENOTYPES), 6))
def test_forward_backward(index):
    g = GENOTYPES[index]
    model = build_model(g, drop_rate=0.2, drop_path_rate=0.2).train()
    x = torch.randn(2, g.in_channels, g.image_size, g.image_size)
    y = model(x)
    assert y.shape == (2, g.num_classes)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("index", range(1, len(GENOTYPES), 6))
def test_features_only_shapes_and_reductions(index):
    g = GENOTYPES[index]
    net = expand(g)
    model = build_model(g, features_only=True).eval()
    feats = model(torch.randn(1, g.in_channels, g.image_size, g.image_size))
    assert len(feats) == len(model.feature_info) == net.num_segments
    for f, info, c, r in zip(feats, model.feature_info, net.segment_channels(), net.segment_sides()):
        assert f.shape == (1, c, r, r)
        assert info["num_chs"] == c
        assert math.ceil(g.image_size / info["reduction"]) == r
    assert not hasattr(model, "classifier") or model.classifier is None


def test_features_only_out_indices_drop_later_units():
    g = Genotype(Stem(8, 3, 2), (Stage("mbconv_se", 16, 32, 3, 2, 2), Stage("bottleneck", 24, 8, 3, 2, 1),
                                 Stage("basic", 32, 16, 3, 2, 1)), Head(40), image_size=33, num_classes=5)
    model = build_model(g, features_only=True, out_indices=(1, -2)).eval()
    feats = model(torch.randn(1, 3, 33, 33))
    assert [f.shape[1:] for f in feats] == [(16, 9, 9), (24, 5, 5)]
    assert [(i["index"], i["reduction"]) for i in model.feature_info] == [(1, 4), (2, 8)]
    assert model.feature_info.channels() == [16, 24] and model.feature_info.module_name() == ["stages.0", "stages.1"]
    # The last stage and the head feed no returned segment, so they are not built.
    assert len(model.stages) == 2 and isinstance(model.head, nn.Identity)


def test_eval_mode_is_deterministic():
    g = GENOTYPES[3]
    model = build_model(g, drop_rate=0.5, drop_path_rate=0.5).eval()
    x = torch.randn(2, g.in_channels, g.image_size, g.image_size)
    assert torch.equal(model(x), model(x))


def test_structure_follows_design():
    g = Genotype(Stem(16, 3, 2), (Stage("bottleneck", 32, 8, 3, 2, 2), Stage("mbconv_se", 32, 64, 5, 2, 2),
                                  Stage("mbconv", 48, 96, 3, 1, 1)), Head(64), image_size=31, num_classes=7)
    model = build_model(g, drop_path_rate=0.3)
    first, second = model.stages[0]
    # ResNet-D projection: ceil-mode 2x2 average pool, then 1x1 conv + BN, no activation.
    pool, proj = first.shortcut
    assert isinstance(pool, nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
    assert proj[0].kernel_size == (1, 1) and len(proj) == 2
    assert isinstance(second.shortcut, nn.Identity) and isinstance(first.act, nn.ReLU)
    mb_first, mb_second = model.stages[1]
    assert isinstance(mb_first.shortcut, nn.AvgPool2d)  # c_in == out and s = 2: pooled identity
    se = [m for m in mb_first.branch if isinstance(m, SqueezeExcitation)]
    assert len(se) == 1 and se[0].fc1.out_channels == 16  # max(1, round(64/4)//8)*8
    assert isinstance(mb_first.branch[-1][-1], nn.BatchNorm2d)  # linear projection
    assert isinstance(mb_first.branch[0][-1], nn.SiLU)
    assert model.stages[2][0].shortcut is None  # 32 -> 48: no residual
    depths = [m.drop_path.p for m in model.modules() if isinstance(m, Block) and isinstance(m.drop_path, StochasticDepth)]
    # Blocks 1-3 of 5 have a residual and p > 0 (block 0's p is 0, block 4 has no residual).
    assert depths == pytest.approx([0.3 * i / 5 for i in (1, 2, 3)])
    assert model.classifier.in_features == 64 and model.classifier.out_features == 7


def test_init_and_zero_init_residual():
    g = Genotype(Stem(16, 3, 2), (Stage("basic", 32, 24, 3, 2, 2), Stage("mbconv_se", 32, 64, 5, 2, 2),
                                  Stage("mbconv", 48, 96, 3, 1, 1)), None, image_size=31, num_classes=7)
    model = build_model(g, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for b in blocks:
        gamma = b.branch[-1][1].weight
        assert torch.all(gamma == 0) if b.shortcut is not None else torch.all(gamma == 1)
    bns = [m for m in build_model(g).modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    torch.manual_seed(0)
    conv = max((m for m in build_model(g).modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    assert conv.weight.numel() > 500
    fan_out = conv.out_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15)


def test_activation_override_and_num_classes():
    g = GENOTYPES[0]
    model = build_model(g, num_classes=3, activation="hardswish")
    assert model.classifier.out_features == 3
    assert any(isinstance(m, nn.Hardswish) for m in model.modules())
    assert not any(isinstance(m, (nn.ReLU, nn.SiLU)) for m in model.modules() if not isinstance(m, SqueezeExcitation))


def test_reads_paths_and_text(tmp_path):
    g = GENOTYPES[7]
    path = tmp_path / "g.json"
    save_genotype(g, path)
    a, b = build_model(path), build_model(g.to_text())
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


@pytest.mark.parametrize("kwargs, field", [
    ({"num_classes": -1}, "num_classes"), ({"drop_rate": 1.0}, "drop_rate"), ({"drop_path_rate": -0.1}, "drop_path_rate"),
    ({"features_only": True, "out_indices": (9,)}, "out_indices"), ({"features_only": True, "out_indices": (1, 0)}, "out_indices"),
    ({"activation": "swish2"}, "activation"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_model(GENOTYPES[0], **kwargs)


def test_bad_genotype_source():
    with pytest.raises(GenotypeError, match="genotype"):
        build_model("no-such-file.json")
