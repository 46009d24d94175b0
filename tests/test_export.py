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
    eager = build_model(Genotype.from_text(TEXT)).eval()
    loaded = torch.jit.load(str(out))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), eager(x), atol=1e-5)
    assert "max |Δ|" in capsys.readouterr().out


def test_onnx_is_written_and_checked(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", TEXT, "--format", "onnx", "--out", str(out)]) == 0
    _only(tmp_path, "m.onnx")
    text = capsys.readouterr().out
    if importlib.util.find_spec("onnx") is None:
        assert "not checked" in text
    else:
        import onnx

        onnx.checker.check_model(onnx.load(str(out)))
        assert "onnx.checker passed" in text
        assert [i.name for i in onnx.load(str(out)).graph.input] == ["image"]


def test_failed_check_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous")
    monkeypatch.setattr(export_command, "_close", lambda a, b: 1e9)
    assert main(["export", TEXT, "--format", "state_dict", "--out", str(out)]) == 2
    assert out.read_bytes() == b"previous"
    _only(tmp_path, "m.pt")


def test_out_must_not_be_a_directory(tmp_path):
    assert main(["export", TEXT, "--format", "onnx", "--out", str(tmp_path)]) == 2
    assert os.listdir(tmp_path) == []
