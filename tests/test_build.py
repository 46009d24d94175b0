"""`run.py build`: module tree plus costs verified on the live module; bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from deepmad_evo.cli import main  # noqa: E402
from deepmad_evo.costs import network_costs  # noqa: E402
from deepmad_evo.genotype import Genotype, save_genotype  # noqa: E402
from deepmad_evo.units import expand  # noqa: E402

pytestmark = pytest.mark.torch

RUN = str(Path(__file__).resolve().parents[1] / "run.py")
TEXT = "i33_c3_n7 stem_k3_s2_c8 basic_d2_k3_s2_b8_c16 mbse_d2_k5_s2_b48_c16 head_c32"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here runs single-threaded (see conftest.one_thread)."""


def test_build_zoo_name_shows_tree_and_verified_costs(capsys):
    assert main(["build", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "DeepMADNet" in out and "Block(mbconv_se" in out and "✓" in out and "✗" not in out


def test_build_json_from_a_file(tmp_path, capsys):
    g = Genotype.from_text(TEXT)
    save_genotype(g, tmp_path / "g.json")
    assert main(["build", str(tmp_path / "g.json"), "--json", "--num-classes", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    closed = network_costs(expand(Genotype(g.stem, g.stages, g.head, g.image_size, g.in_channels, 3)), "torch")
    assert summary["verified"] and (summary["params"], summary["macs"]) == (closed.params, closed.macs)
    assert [s["reduction"] for s in summary["segments"]] == [2, 4, 8]
    assert [s["side"] for s in summary["segments"]] == [17, 9, 5]


def test_build_image_size_override(capsys):
    assert main(["build", TEXT, "--image-size", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == 20


def test_unknown_genotype_exits_2_with_one_line():
    p = subprocess.run([sys.executable, RUN, "build", "no-such-genotype"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: genotype:") and "zoo model" in lines[0], p.stderr


@pytest.mark.parametrize("args, message", [
    (["build", TEXT, "--depth", "-1"], "--depth"),
    (["build", TEXT, "--num-classes", "0"], "--num-classes"),
    (["build", TEXT, "--image-size", "0"], "--image-size"),
])
def test_bad_options_exit_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_search_builds_the_winner_only_with_build_check(tmp_path, capsys):
    assert main(["--config", "tiny", "--out", str(tmp_path / "run")]) == 0
    assert "build check" not in capsys.readouterr().out
    assert main(["--config", "tiny", "--out", str(tmp_path / "run"), "--build-check"]) == 0
    out = capsys.readouterr().out
    assert "build check (live nn.Module = closed form" in out and "not a budget check" in out and "✗" not in out
