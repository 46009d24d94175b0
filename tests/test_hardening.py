"""Hostile input, bounded: every bad input / state / path is one line `error: <field>: …`, exit 2.

Each case runs the real CLI in a subprocess with an address-space limit and a time limit, so a
reader that loads a 1 GB file, builds a 2e9-value grid or recurses 100 000 levels fails the test
instead of the machine. Also: the disk-full path (fault injection), the markup-free printing, the
inspect opt-in for arbitrary code, data safety of cached results and refused resumes.
"""

from __future__ import annotations

import errno
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepmad_evo import cli
from deepmad_evo.genotype import Genotype, load_genotype, save_genotype
from proctools import start_cli

TINY = "i64_c3_n10 stem_k3_s2_c16 mbse_d1_k3_s2_b32_c16 mbse_d1_k3_s2_b64_c32 mbse_d1_k3_s1_b96_c48 head_c256"
MEMORY = 6 * 2**30  # address space per case: torch alone maps ~2-3 GiB of virtual memory
SECONDS = 120  # generous (2 loaded cores); a reader that hangs or grows without bound never ends


def _toml(extra: str) -> str:
    return ('[template]\nblocks = ["mbconv"]\nstrides = [2]\nimage_size = 32\n' + extra)


FILES = {
    "afile": "not a directory\n",
    "empty.toml": "",
    "zero-step.toml": _toml("[space]\nexpansion = [1.5, 6.0, 0.0]\n"),
    "tiny-step.toml": _toml("[space]\nexpansion = [1.5, 6.0, 1e-12]\n"),
    "huge-grid.toml": _toml("[space]\nchannels = [8, 2000000000, 1]\n"),
    "pop-float.toml": _toml("[search]\npop_size = 1e11\n"),
    "pop-int.toml": _toml("[search]\npop_size = 100000000000\n"),
    "nan-beta.toml": _toml("[objective]\nbeta = nan\n"),
    "inf-alpha.toml": _toml("[objective]\nalpha = [inf]\n"),
    "negative-seed.toml": _toml("[search]\nseed = -1\n"),
    "deep.toml": "a = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep.json": '{"format": "deepmad-evo/genotype/1", "stem": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nan.json": '{"format": "deepmad-evo/genotype/1", "image_size": NaN, "stem": {"out": 8, "k": 3, "s": 2}, '
                '"stages": []}',
}


def _write_files(root: Path) -> None:
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "binary.toml").write_bytes(bytes(range(256)) * 8)
    (root / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with open(root / "huge.json", "wb") as f:  # sparse: 1 GiB that takes no disk
        f.truncate(2**30)
    (root / "ten-mb.json").write_text('{"format": "' + "x" * (10 * 2**20) + '"}')
    g = Genotype.from_text(TINY).to_dict()
    g["stages"][2]["out"] = 1_000_000_000
    (root / "wide.json").write_text(json.dumps(g))
    g = Genotype.from_text(TINY).to_dict()
    g["image_size"] = 100_000
    (root / "big-image.json").write_text(json.dumps(g))
    # State files: a Pareto budget record of this run but without its genotype.
    pareto = root / "pareto-run"
    pareto.mkdir()
    (root / "train-run").mkdir()


# (id, argv, field the one line must name). {root} is the case folder.
CASES = [
    # --out pointing at a file or below one
    ("search-out-file", ["--config", "tiny", "--out", "afile", "--no-build"], "--out"),
    ("search-out-below-file", ["--config", "tiny", "--out", "afile/run", "--no-build"], "--out"),
    ("pareto-out-file", ["pareto", "--config", "tiny", "--budget", "10M", "--out", "afile"], "--out"),
    ("train-out-file", ["train", TINY, "--dataset", "fake", "--out", "afile"], "--out"),
    ("export-out-below-file", ["export", TINY, "--format", "state_dict", "--out", "afile/x.pt"], "--out"),
    ("crosscheck-out-below-file", ["cross-check", TINY, "--config", "tiny", "--out", "afile/x.json"], "--out"),
    # markup in values is printed verbatim
    ("markup-genotype", ["inspect", "[/x]"], "'[/x]'"),
    ("markup-config", ["--config", "[bold]x[/bold]"], "'[bold]x[/bold]'"),
    ("export-opset-99", ["export", TINY, "--format", "onnx", "--opset", "99", "--out", "m.onnx"], "--opset"),
    # configs
    ("expansion-zero-step", ["--config", "zero-step.toml"], "space.expansion"),
    ("expansion-tiny-step", ["--config", "tiny-step.toml"], "space.expansion"),
    ("channels-huge-grid", ["--config", "huge-grid.toml"], "space.channels"),
    ("pop-size-float", ["--config", "pop-float.toml"], "search.pop_size"),
    ("pop-size-huge", ["--config", "pop-int.toml"], "search.pop_size"),
    ("toml-beta-nan", ["--config", "nan-beta.toml"], "objective.beta"),
    ("toml-alpha-inf", ["--config", "inf-alpha.toml"], "objective.alpha"),
    ("toml-seed-negative", ["--config", "negative-seed.toml"], "search.seed"),
    ("toml-empty", ["--config", "empty.toml"], "[template]"),
    ("toml-binary", ["--config", "binary.toml"], "binary.toml"),
    ("toml-deep", ["--config", "deep.toml"], "deep.toml"),
    ("pareto-budget-record-without-genotype", ["pareto", "--config", "tiny", "--budget", "10M", "--jobs", "1",
                                               "--out", "pareto-run"], "budget-10M.json"),
    # genotype files and text
    ("json-deep", ["inspect", "deep.json"], "nested"),
    ("json-nan", ["inspect", "nan.json"], "NaN"),
    ("json-binary", ["inspect", "binary.json"], "binary.json"),
    ("file-1GB", ["inspect", "huge.json"], "huge.json"),
    ("file-10MB", ["inspect", "ten-mb.json"], "ten-mb.json"),
    ("text-superscript", ["inspect", TINY.replace("c48", "c4²")], "stages[2]"),
    ("text-depth-100000", ["inspect", TINY.replace("d1_k3_s1", "d100000_k3_s1")], "stages[2].depth"),
    ("text-channels-1e30", ["inspect", TINY.replace("c48", "c" + "1" + "0" * 30)], "stages[2]"),
    ("build-channels-1e9", ["build", "wide.json"], "stages[2].out"),
    ("export-channels-1e9", ["export", "wide.json", "--format", "state_dict", "--out", "w.pt"], "stages[2].out"),
    ("train-channels-1e9", ["train", "wide.json", "--dataset", "fake"], "stages[2].out"),
    ("build-image-1e5", ["build", "big-image.json"], "image_size"),
    ("export-image-1e5", ["export", TINY, "--format", "state_dict", "--image-size", "100000", "--out", "w.pt"],
     "--image-size"),
    ("train-image-1e5", ["train", TINY, "--dataset", "fake", "--image-size", "100000"], "--image-size"),
    ("build-needs-terabytes", ["build", "i224_c3_n1000 stem_k3_s2_c64 bneck_d4_k31_s2_b16384_c16384 head_c2048"],
     "genotype: building and running this network needs about"),
    ("export-needs-too-much", ["export", "i8192_c3_n10 stem_k3_s2_c64 mb_d4_k3_s2_b1024_c256", "--format", "onnx",
                               "--out", "x.onnx"], "GiB"),
    ("train-needs-too-much", ["train", "i8192_c3_n10 stem_k3_s2_c64 mb_d4_k3_s2_b1024_c256", "--dataset", "fake"],
     "genotype: training this network needs about"),
    # non-finite numbers
    ("search-rho-inf", ["--config", "tiny", "--rho", "inf"], "--rho"),
    ("inspect-alpha-nan", ["inspect", TINY, "--alpha", "nan", "1", "8"], "--alpha"),
    ("inspect-beta-inf", ["inspect", TINY, "--beta", "inf"], "--beta"),
    ("search-budget-overflow", ["--config", "tiny", "--budget", "1e999"], "--budget"),
    ("train-lr-nan", ["train", TINY, "--dataset", "fake", "--lr", "nan"], "--lr"),
    # arbitrary code is opt-in
    ("inspect-os-abort", ["inspect", "os:abort"], "--allow-code"),
    ("inspect-sys-exit", ["inspect", "sys:exit"], "--allow-code"),
    ("inspect-breakpoint", ["inspect", "builtins:breakpoint"], "--allow-code"),
    ("inspect-missing-path-with-colon", ["inspect", "runs/a:b/genotype.json"], "genotype"),
    # fields named
    ("search-seed-negative", ["--config", "tiny", "--seed", "-1"], "--seed"),
    ("pareto-seed-negative", ["pareto", "--config", "tiny", "--budget", "10M", "--seed", "-1"], "--seed"),
    ("export-seed-negative", ["export", TINY, "--format", "state_dict", "--seed", "-1", "--out", "s.pt"], "--seed"),
    ("pareto-jobs-zero", ["pareto", "--config", "tiny", "--budget", "10M", "--jobs", "0"], "--jobs"),
]


@pytest.fixture(scope="module")
def case_results(tmp_path_factory):
    """Run every case once (two at a time), each in its own folder, under the memory and time limits."""
    def run(case):
        name, argv, _ = case
        root = tmp_path_factory.mktemp(name)
        _write_files(root)
        if name == "pareto-budget-record-without-genotype":
            _plant_budget_record(root / "pareto-run")
        t0 = time.monotonic()
        p = start_cli(*argv, cwd=root, memory_bytes=MEMORY)
        try:
            out, err = p.communicate(timeout=SECONDS)
        except Exception:
            p.kill()
            out, err = p.communicate()
        return name, (p.returncode, out, err, time.monotonic() - t0)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, CASES))


def _plant_budget_record(out: Path) -> None:
    """A finished record of exactly the run the case starts, minus its genotype."""
    from deepmad_evo.config import load_config
    from deepmad_evo.pareto import budget_points, run_pareto

    cfg = load_config("tiny")
    run_pareto(cfg, budget_points(cfg, [10e6]), out=out, jobs=1, published=None)
    record_path = out / "budget-10M.json"
    record = json.loads(record_path.read_text())
    del record["genotype"]
    record_path.write_text(json.dumps(record))
    for p in out.iterdir():
        if p.name != "budget-10M.json":
            p.unlink()


@pytest.mark.parametrize("name, argv, field", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_field(case_results, name, argv, field):
    rc, out, err, seconds = case_results[name]
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert field in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert len(lines[0]) <= 500  # no file content echoed
    assert seconds < SECONDS


def test_error_lines_are_not_read_as_markup(capsys):
    assert cli.main(["export", TINY, "--format", "state_dict", "--out", "no/such[/x]/dir\0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[/x]" in err


def test_export_prints_the_path_verbatim(tmp_path, capsys):
    out = tmp_path / "model[final].pt"
    assert cli.main(["export", TINY, "--format", "state_dict", "--out", str(out)]) == 0
    assert out.is_file()
    assert "model[final].pt" in capsys.readouterr().out.replace("\n", "")


@pytest.mark.parametrize("where", ["os.replace", "write"])
def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "run"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "os.replace":
        monkeypatch.setattr(os, "replace", full)
    else:
        monkeypatch.setattr(Path, "write_bytes", full)
    assert cli.main(["--config", "tiny", "--out", str(out), "--no-build"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "genotype.json" in err, err
    assert not list(out.glob(".*.tmp")) and not (out / "run.json").exists()


def test_disk_full_during_export_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    assert cli.main(["export", TINY, "--format", "state_dict", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.pt: No space left on device" in err
    assert out.read_bytes() == b"old" and not list(tmp_path.glob(".*.tmp"))


def test_internal_errors_say_bug_and_where_the_traceback_is(monkeypatch, capsys):
    import deepmad_evo.commands.inspect as inspect_command

    def broken(args, console):
        raise KeyError("oops")

    monkeypatch.setattr(inspect_command, "run", broken)
    assert cli.main(["inspect", TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a bug" in err and "KeyError" in err
    path = Path(err.split("full traceback in ")[1].strip())
    assert "Traceback" in path.read_text()
    path.unlink()


def test_inspect_runs_code_only_with_allow_code(capsys):
    assert cli.main(["inspect", "deepmad_evo.models:list_models"]) == 2
    assert "--allow-code" in capsys.readouterr().err
    # With the flag the callable runs (and is refused for not returning a module, which proves it ran).
    assert cli.main(["inspect", "--allow-code", "deepmad_evo.models:list_models"]) == 2
    assert "returned list, expected an nn.Module" in capsys.readouterr().err


# ---------------------------------------------------------------- data safety

def test_refused_resume_writes_nothing(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["--dataset", "fake", "--epochs", "1", "--batch-size", "16", "--warmup-epochs", "0", "--out", str(out)]
    recipe = tmp_path / "r.toml"
    from deepmad_evo.train import CONFIG_DIR

    recipe.write_text(CONFIG_DIR.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 16")
                      .replace("fake_val_images = 64", "fake_val_images = 8"))
    assert cli.main(["train", TINY, "--config", str(recipe), *args]) == 0
    def files():
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    before = files()
    other = TINY.replace("c48", "c56")
    assert cli.main(["train", other, "--config", str(recipe), "--resume", *args]) == 2
    assert "different network" in capsys.readouterr().err
    assert files() == before


def _search(out, *extra):
    return cli.main(["--config", "tiny", "--out", str(out), "--no-build", *extra])


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    assert _search(out) == 0
    return out, (out / "run.json").read_text(), load_genotype(out / "genotype.json")


@pytest.mark.parametrize("content", ["[1, 2]", '{"format": "deepmad-evo/run/1"', "\x00\x01binary",
                                     '{"format": "deepmad-evo/run/1", "config": null}'])
def test_damaged_run_record_searches_again(finished_search, tmp_path, capsys, content):
    src, record, genotype = finished_search
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(content)
    assert _search(out) == 0
    assert load_genotype(out / "genotype.json") == genotype
    assert json.loads((out / "run.json").read_text())["genotype"] == genotype.to_dict()


def test_run_record_holds_strict_json(finished_search):
    _, record, _ = finished_search
    json.loads(record, parse_constant=lambda c: pytest.fail(f"{c} in run.json"))


def test_checkpoint_with_the_right_tag_but_bad_keys_is_one_line(tmp_path):
    import torch

    from deepmad_evo.train import CHECKPOINT_FORMAT, load_checkpoint

    path = tmp_path / "checkpoint.pt"
    for state in ({"format": CHECKPOINT_FORMAT}, {"format": CHECKPOINT_FORMAT, "epoch": "1", "model": {}},
                  {"format": CHECKPOINT_FORMAT, "epoch": 1, "steps_per_epoch": 1, "world_size": 1, "recipe": {},
                   "model": {"w": 3}, "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": [], "history": []}):
        torch.save(state, path)
        with pytest.raises(ValueError, match=r"^checkpoint: .* is damaged \(.*\); delete it to start over$"):
            load_checkpoint(path)
