"""Tracing live modules: the decoded genotype scores exactly as its closed form; torchvision layer counts."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from deepmad_evo import build_model  # noqa: E402
from deepmad_evo.report import genotype_report  # noqa: E402
from deepmad_evo.trace import is_module_spec, load_module, module_report, trace_module, trace_report  # noqa: E402
from tests.randgeno import random_genotypes  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs single-threaded (see conftest.one_thread)."""


def plain_net() -> nn.Module:
    """A VGG-like net for the ``module:callable`` path: two convs, a pool, one conv, a classifier."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(16, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))


@pytest.mark.parametrize("g", random_genotypes(12, seed=77), ids=lambda g: g.to_text())
def test_traced_decoder_matches_the_closed_form(g):
    """Two independent readers of one network: hooks on the live module vs. the expanded spec."""
    closed = genotype_report(g)
    traced = trace_report(trace_module(build_model(g), g.image_size, g.in_channels))
    for key in ("macs", "params", "layers"):
        assert traced[key] == closed[key], key
    for key in ("rho", "entropy", "depth_penalty", "objective"):
        assert traced[key] == pytest.approx(closed[key], rel=1e-12, abs=1e-12), key
    for key in ("rho_prefix", "entropy_terms"):
        assert traced[key] == pytest.approx(closed[key], rel=1e-12), key
    fields = ("in", "out", "k", "s", "depth", "side", "segment", "macs", "params")
    assert [[row[f] for f in fields] for row in traced["stages"]] == [[row[f] for f in fields] for row in closed["stages"]]
    assert traced["classifier"] == closed["classifier"]
    fields = ("channels", "side", "layers")
    assert [[s[f] for f in fields] for s in traced["segments"]] == [[s[f] for f in fields] for s in closed["segments"]]
    assert set(closed) <= set(traced)


def test_resnet18_layers_segments_and_rho():
    report = module_report("torchvision:resnet18", image_size=64)
    # Main path: the 7x7 stem, then 8 basic blocks of two 3x3 convs; the 3 downsample 1x1s are branches.
    assert report["layers"] == 17 and report["excluded"] == {"branch": 3, "gate": 0}
    assert [s["layers"] for s in report["segments"]] == [1, 5, 9, 13, 17]
    widths = [3 * 49] + [64 * 9] * 4 + [64 * 9] + [128 * 9] * 3 + [128 * 9] + [256 * 9] * 3 + [256 * 9] + [512 * 9] * 3
    for seg, end in zip(report["segments"], (1, 5, 9, 13, 17)):
        expected = end / math.exp(sum(math.log(w) for w in widths[:end]) / end)
        assert seg["rho_prefix"] == pytest.approx(expected, rel=1e-12)
    assert report["params"] == 11_689_512  # torchvision's published count for resnet18
    assert [s["channels"] for s in report["segments"]] == [64, 64, 128, 256, 512]
    assert [s["side"] for s in report["segments"]] == [32, 16, 8, 4, 2]


def test_mobilenet_v2_rho_from_its_published_table():
    """Widths written out from the MobileNetV2 paper's table, independently of the tracer."""
    widths, c = [3 * 9, 9, 32], 16  # stem; t=1 block: depthwise 3x3, project from 32
    ends = []  # layers through the end of each segment: a new one starts at every stride-2 block
    for t, out, n, s in ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        if s == 2:
            ends.append(len(widths))
        for _ in range(n):
            widths += [c, 9, c * t]  # expand 1x1 (width c_in), depthwise k² = 9, project 1x1 (width c_in·t)
            c = out
    widths.append(320)  # head 1x1
    ends.append(len(widths))
    report = module_report("torchvision:mobilenet_v2", image_size=64)
    assert report["layers"] == len(widths) == 52
    assert [s["layers"] for s in report["segments"]] == ends == [3, 9, 18, 39, 52]
    for seg, end in zip(report["segments"], ends):
        assert seg["rho_prefix"] == pytest.approx(end / math.exp(sum(map(math.log, widths[:end])) / end), rel=1e-12)


def test_efficientnet_excludes_squeeze_excitation_gates():
    report = module_report("torchvision:efficientnet_b0", image_size=64)
    # 16 MBConv blocks: the first (expand ratio 1) has 2 main convs, the others 3; stem and head.
    assert report["layers"] == 1 + 2 + 15 * 3 + 1
    assert report["excluded"] == {"branch": 0, "gate": 32}
    assert [s["depth"] for s in report["stages"]] == [1, 1, 2, 2, 3, 3, 4, 1, 1]


def test_module_callable_spec_and_pool_segments():
    report = module_report("tests.test_trace:plain_net", image_size=16, allow_code=True)
    assert report["layers"] == 3 and report["source"] == "tests.test_trace:plain_net"
    # The max pool shrinks the map before the third conv, so it opens a second segment.
    assert [s["layers"] for s in report["segments"]] == [2, 3]
    assert report["classifier"]["params"] == 32 * 4 + 4
    assert report["macs"] == 16 * 16 * (3 * 8 * 9 + 8 * 16 * 9) + 8 * 8 * 16 * 32 + 32 * 4


def test_is_module_spec():
    assert is_module_spec("torchvision:resnet50") and is_module_spec("my.pkg:make_net")
    for text in ("runs/a/genotype.json", "i224_c3_n1000 stem_k3_s2_c32 mb_d1_k3_s1_b8_c8", "C:\\x.json", "a:b:c"):
        assert not is_module_spec(text)


@pytest.mark.parametrize("spec, message", [
    ("torchvision:resnet5", "did you mean"), ("no_such_module_xyz:f", "cannot import"),
    ("math:no_such_fn", "no callable"), ("math:sqrt", "without arguments"), ("builtins:dict", "expected an nn.Module"),
    ("resnet50", "expected 'torchvision:<name>'"),
])
def test_bad_specs_raise_one_clear_value_error(spec, message):
    with pytest.raises(ValueError, match=message):
        load_module(spec, allow_code=True)


@pytest.mark.parametrize("spec", ["os:abort", "sys:exit", "builtins:breakpoint", "tests.test_trace:plain_net"])
def test_arbitrary_callables_run_only_when_allowed(spec):
    with pytest.raises(ValueError, match=r"arbitrary code.*--allow-code"):
        load_module(spec)


def test_inspect_command_traces_module_specs(capsys):
    import json

    from deepmad_evo.cli import main

    assert main(["inspect", "tests.test_trace:plain_net", "--allow-code", "--image-size", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layers"] == 3 and report["source"] == "tests.test_trace:plain_net"
    assert main(["inspect", "tests.test_trace:plain_net", "--allow-code", "--image-size", "16"]) == 0
    assert "Sequential" not in capsys.readouterr().err
    assert main(["inspect", "torchvision:resnet18", "--convention", "tinynas"]) == 2
    assert "--convention" in capsys.readouterr().err
