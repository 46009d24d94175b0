"""`run.py export`: each format written atomically and checked against the eager module."""

from __future__ import annotations

import importlib.util
import os
import stat

import pytest

torch = pytest.importorskip("torch")

from deepmad_evo.cli import main  # noqa: E402
from deepmad_evo.commands import export as export_command  # noqa: E402
from deepmad_evo.genotype import Genotype  # noqa: E402
from deepmad_evo.model import build_model  # noqa: E402

pytestmark = pytest.mark.torch

TEXT = "i32_c3_n5 stem_k3_s2_c8 bneck_d1_k3_s2_b8_c16 mbse_d2_k3_s2_b32_c24 head_c32"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs single-threaded (see conftest.one_thread)."""


def _only(folder, name):
    """The export left exactly its file: no temp files behind."""
    assert sorted(os.listdir(folder)) == [name]


def test_state_dict_loads_strictly_into_a_fresh_module(tmp_path, capsys):
    out = tmp_path / "sub" / "w.pt"
    assert main(["export", TEXT, "--format", "state_dict", "--out", str(out)]) == 0
    _only(out.parent, "w.pt")
    model = build_model(Genotype.from_text(TEXT))
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    assert "strict" in capsys.readouterr().out
    # Not the 0600 of a raw temp file.
    assert stat.S_IMODE(out.stat().st_mode) & 0o044


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_matches_eager(tmp_path, capsys):
    out = tmp_path / "m.ts"
    assert main(["export", TEXT, "--format", "torchscript", "--out", str(out), "--seed", "3"]) == 0
    _only(tmp_path, "m.ts")
    torch.manual_seed(3)
    eager = build_model(Genotype.from_text(TEXT))
    export_command.calibrate(eager, torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    loaded = torch.jit.load(str(out))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), eager(x), atol=1e-5)
    assert "max |Δ|" in capsys.readouterr().out


def test_onnx_is_written_and_compared_with_onnxruntime(tmp_path, capsys):
    # The dev extra installs the onnx extra: this runs for real, never skipped.
    import onnx
    import onnxruntime

    out = tmp_path / "m.onnx"
    assert main(["export", TEXT, "--format", "onnx", "--out", str(out), "--seed", "1"]) == 0
    _only(tmp_path, "m.onnx")
    text = capsys.readouterr().out
    assert "onnx.checker passed" in text and "onnxruntime vs eager" in text
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["image"]
    # Independent of the command's own check: a batch of 3 (dynamic batch axis) against a module built
    # and calibrated the same way.
    torch.manual_seed(1)
    eager = build_model(Genotype.from_text(TEXT))
    gen = torch.Generator().manual_seed(1)
    export_command.calibrate(eager, torch.randn(8, 3, 32, 32, generator=gen))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = eager(x)
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
    assert expected.abs().max() > 0.1  # not the vacuous ~0 logits of an uncalibrated net


def test_pt2_round_trips_through_torch_export(tmp_path, capsys):
    out = tmp_path / "m.pt2"
    assert main(["export", TEXT, "--format", "pt2", "--out", str(out)]) == 0
    _only(tmp_path, "m.pt2")
    assert "torch.export.load" in capsys.readouterr().out
    program = torch.export.load(str(out))
    y = program.module()(torch.randn(5, 3, 32, 32))
    assert y.shape == (5, 5)


def test_onnx_without_the_extra_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    out = tmp_path / "m.onnx"
    assert main(["export", TEXT, "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "onnx extra" in err and "onnxscript" in err and "deepmad-evo[onnx]" in err
    assert os.listdir(tmp_path) == []


def test_calibration_makes_mobile_logits_comparable():
    # At initialisation a deep mbconv_se net's logits are ~0, which would make any tolerance pass.
    g = Genotype.from_text("i32_c3_n10 stem_k3_s2_c16 mbse_d4_k3_s2_b64_c24 mbse_d4_k3_s2_b96_c32 head_c64")
    torch.manual_seed(0)
    model = build_model(g).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        raw = model(x).abs().max()
        export_command.calibrate(model, x)
        calibrated = model(x).abs().max()
    assert calibrated > 100 * raw and calibrated > 0.1


def test_compare_is_relative_and_absolute():
    y = torch.tensor([[10.0, -0.001]])
    assert export_command.compare(y + torch.tensor([[5e-4, 5e-6]]), y, "onnx") == pytest.approx(5e-4, rel=1e-3)
    with pytest.raises(ValueError, match=r"^--format onnx: the written file disagrees"):
        export_command.compare(y + torch.tensor([[2e-3, 0.0]]), y, "onnx")
    with pytest.raises(ValueError, match="disagrees"):
        export_command.compare(y + torch.tensor([[0.0, 2e-5]]), y, "onnx")
    with pytest.raises(ValueError, match="shape"):
        export_command.compare(y[:, :1], y, "onnx")


def _always_fails(got, expected, fmt):
    raise ValueError(f"--format {fmt}: the written file disagrees with the module (max |Δ| 1e9)")


def test_failed_check_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous")
    monkeypatch.setattr(export_command, "compare", _always_fails)
    assert main(["export", TEXT, "--format", "state_dict", "--out", str(out)]) == 2
    assert out.read_bytes() == b"previous"
    _only(tmp_path, "m.pt")


def test_out_must_not_be_a_directory(tmp_path):
    assert main(["export", TEXT, "--format", "onnx", "--out", str(tmp_path)]) == 2
    assert os.listdir(tmp_path) == []
