"""What a new user meets in the first hour with the CLI (issue: version, help, presets, GENOTYPE forms, run
identity, recorded conventions, fast cached results, quiet pipes, training defaults, out-of-scope notices)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepmad_evo import __version__
from deepmad_evo.cli import build_parser, main
from deepmad_evo.commands.common import resolve_config, search_run_dir as default_out
from deepmad_evo.genotype import Genotype, load_genotype
from deepmad_evo.objective import evaluate

REPO = Path(__file__).resolve().parents[1]
RUN = str(REPO / "run.py")


def cli(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, **kw)


def search_args(*argv) -> argparse.Namespace:
    return build_parser().parse_args(["search", *argv])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny search (tinynas convention, so that inspect's torch default would disagree)."""
    out = tmp_path_factory.mktemp("first-hour") / "run"
    assert main(["--config", "tiny", "--convention", "tinynas", "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------- basics

def test_version_from_the_script_and_python_m():
    for argv in ([sys.executable, RUN, "--version"], [sys.executable, "-m", "deepmad_evo", "--version"]):
        p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert p.returncode == 0 and p.stdout.strip() == f"deepmad-evo {__version__}", p.stderr


def test_top_level_help_shows_search_options_presets_and_flops(capsys):
    # main() is the one error boundary: --help's SystemExit comes back as the status.
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for needle in ("--budget", "--config", "presets", "FLOPs", "GENOTYPE", "deepmad-r50-published"):
        assert needle in text


def test_every_subcommand_has_a_description_and_help_on_every_option():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in sub.choices.items():
        if not parser.description:
            missing.append(f"{name}: description")
        for action in parser._actions:
            if action.help is None or (action.help != argparse.SUPPRESS and not action.help.strip()):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_presets_lists_presets_with_budgets_and_the_zoo(capsys):
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    presets = {p["name"]: p for p in data["presets"]}
    assert {"r18", "r34", "r50", "mb-29m", "mb-50m", "mb-89m", "b0", "mbv2", "tiny"} <= set(presets)
    assert (presets["r50"]["macs"], presets["r50"]["params"], presets["r50"]["convention"]) == (4.13e9, 25.55e6, "tinynas")
    assert "R50" in presets["r50"]["description"]
    assert {"r50", "deepmad-r50-published", "deepmad-29m-288-published"} <= {z["name"] for z in data["zoo"]}
    assert main(["presets"]) == 0
    table = capsys.readouterr().out
    assert "FLOPs" in table and "deepmad-89m-published" in table


def test_a_closed_pipe_is_quiet():
    # The reader is gone before the command writes: the write fails with EPIPE.
    for args in (["inspect", "r50", "--json"], ["inspect", "r50"]):
        proc = subprocess.Popen([sys.executable, RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) in (0, 1)
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# ---------------------------------------------------------------- GENOTYPE means the same everywhere

@pytest.mark.parametrize("name", ["r50", "deepmad-r50-published", "deepmad-29m-288-published"])
def test_inspect_takes_zoo_names(name, capsys):
    assert main(["inspect", name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["text"]
    # A zoo network is checked the way it was designed: the paper presets' tinynas convention.
    assert report["convention"] == "tinynas"


def test_inspect_and_cross_check_take_a_run_directory(tiny_run, capsys):
    assert main(["inspect", str(tiny_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["text"] == load_genotype(tiny_run / "genotype.json").to_text()
    from deepmad_evo.commands.crosscheck import resolve

    cfg, genotype = resolve(build_parser().parse_args(["cross-check", str(tiny_run), "--config", "tiny"]))[:2]
    assert genotype == load_genotype(tiny_run / "genotype.json")


def test_a_directory_without_genotype_json_is_one_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "directory without genotype.json" in err


# ---------------------------------------------------------------- conventions recorded with the genotype

def test_genotype_json_records_convention_and_budgets(tiny_run):
    design = json.loads((tiny_run / "genotype.json").read_text())["design"]
    assert design["convention"] == "tinynas" and design["preset"] == "tiny"
    assert (design["macs"], design["params"], design["rho"]) == (20e6, 0.5e6, 0.5)


def test_inspect_checks_a_search_result_the_way_the_search_did(tiny_run, capsys):
    g = load_genotype(tiny_run / "genotype.json")
    for arg in (tiny_run, tiny_run / "genotype.json"):
        assert main(["inspect", str(arg), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        ev = evaluate(g, alpha=(1, 1, 8), convention="tinynas")
        assert report["convention"] == "tinynas" and report["params"] == ev.params
        assert set(report["constraints"]) >= {"rho", "macs", "params"}
        assert all(c["ok"] for c in report["constraints"].values()), report["constraints"]
    assert main(["inspect", str(tiny_run)]) == 0
    assert "budgets recorded with the genotype (preset tiny, tinynas convention)" in capsys.readouterr().out
    # Explicit options win.
    assert main(["inspect", str(tiny_run), "--convention", "torch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["convention"] == "torch"


def test_search_labels_its_budget_check_and_its_build_check(tmp_path, capsys):
    assert main(["--config", "tiny", "--out", str(tmp_path / "r"), "--build-check"]) == 0
    out = capsys.readouterr().out
    assert "budgets checked in the torch convention" in out
    assert "build check (live nn.Module = closed form" in out and "not a budget check" in out


# ---------------------------------------------------------------- run identity

def test_cross_check_is_part_of_the_run_identity(tiny_run, capsys):
    cfg = resolve_config(search_args("--config", "tiny"))
    assert default_out(cfg, True) != default_out(cfg, False)
    before = (tiny_run / "run.json").read_bytes()
    # The plain run's directory is not silently reused or replaced by a cross-checked one.
    assert main(["--config", "tiny", "--convention", "tinynas", "--out", str(tiny_run), "--cross-check"]) == 2
    err = capsys.readouterr().err
    assert "holds a different search (without --cross-check)" in err and "--force" in err
    assert (tiny_run / "run.json").read_bytes() == before


def test_a_different_search_in_the_same_out_is_refused(tiny_run, capsys):
    before = (tiny_run / "genotype.json").read_bytes()
    assert main(["--config", "tiny", "--convention", "tinynas", "--seed", "5", "--out", str(tiny_run)]) == 2
    assert "differs in search.seed" in capsys.readouterr().err
    assert (tiny_run / "genotype.json").read_bytes() == before


def test_showing_a_cached_result_imports_no_torch(tiny_run):
    code = ("import sys; from deepmad_evo.cli import main; "
            f"status = main(['--config', 'tiny', '--convention', 'tinynas', '--out', {str(tiny_run)!r}]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "already holds this search" in p.stdout and p.stdout.strip().endswith("NO-TORCH 0")


def test_a_missing_cached_genotype_is_rebuilt_without_torch(tiny_run, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_bytes((tiny_run / "run.json").read_bytes())
    code = ("import sys; from deepmad_evo.cli import main; "
            f"status = main(['--config', 'tiny', '--convention', 'tinynas', '--out', {str(out)!r}]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', status)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "already holds this search" in p.stdout and "genotype.json was missing: rebuilt it" in p.stdout
    assert p.stdout.strip().endswith("NO-TORCH 0")
    assert (out / "genotype.json").read_bytes() == (tiny_run / "genotype.json").read_bytes()


# ---------------------------------------------------------------- budgets and presets

def test_budget_alone_scales_the_params_budget_like_pareto():
    from deepmad_evo.pareto import scaled_params

    cfg = resolve_config(search_args("--config", "r50", "--budget", "2G"))
    assert cfg.budget.macs == 2e9
    assert cfg.budget.params == pytest.approx(25.55e6 * 2 / 4.13)
    assert cfg.budget.params == pytest.approx(scaled_params(resolve_config(search_args("--config", "r50")), 2e9))
    cfg = resolve_config(search_args("--config", "r50", "--budget", "2G", "--params", "20M"))
    assert cfg.budget.params == 20e6
    cfg = resolve_config(search_args("--config", "r50", "--budget", "2G", "--params", "off"))
    assert cfg.budget.params is None


def test_block_switch_is_labelled_and_says_its_rho():
    cfg = resolve_config(search_args("--block", "bottleneck"))
    assert cfg.name == "mb-29m+bottleneck" and cfg.budget.rho == 0.3
    assert "mb-29m+bottleneck" in str(default_out(cfg))
    cfg = resolve_config(search_args("--block", "mbconv_se"))
    assert cfg.name == "mb-29m"  # the preset's own block: no relabelling


# ---------------------------------------------------------------- train

def _small_recipe(tmp_path) -> Path:
    from deepmad_evo.train import CONFIG_DIR

    recipe = tmp_path / "small.toml"
    recipe.write_text(CONFIG_DIR.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 16")
                      .replace("fake_val_images = 64", "fake_val_images = 8").replace("\nepochs = 2", "\nepochs = 4")
                      .replace("warmup_epochs = 1", "warmup_epochs = 3"))
    return recipe


@pytest.mark.torch
def test_train_a_zoo_name_for_one_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny", "--config", str(_small_recipe(tmp_path)), "--epochs", "1", "--batch-size", "8",
                 "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    # The recipe's 3 warm-up epochs are clamped for a 1-epoch smoke run, with a notice instead of a refusal.
    assert "warm-up epochs clamped to 0.5" in out
    # Output to a pipe: plain step lines, not a live bar.
    assert "epoch 1/1 step 2/2" in out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train-tiny-") and runs[0].name.endswith("-fake")
    assert (runs[0] / "curves.png").stat().st_size > 0


def test_train_default_folders_differ_per_genotype(tiny_run):
    from deepmad_evo.commands.common import train_label as label_of, train_run_dir as default_train_out
    from deepmad_evo.models import get_genotype

    a, b = get_genotype("tiny"), load_genotype(tiny_run / "genotype.json")
    assert label_of(str(tiny_run)) == "run" and label_of(str(tiny_run / "genotype.json")) == "run"
    assert label_of("r50") == "r50" and label_of(a.to_text()) == "genotype"
    assert default_train_out(a, "genotype", "fake") != default_train_out(Genotype.from_text(
        a.to_text().replace("head_c256", "head_c264")), "genotype", "fake")
    assert default_train_out(b, "run", "fake").name.startswith("train-run-")


@pytest.mark.torch
def test_curves_show_a_single_epoch(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from deepmad_evo.train import plot_curves

    row = {"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "val_top1": 10.0, "val_top5": 50.0, "lr": 0.1}
    plot_curves([row], tmp_path / "one.png")
    plot_curves([{**row, "train_loss": float("nan"), "val_loss": float("nan"), "val_top1": float("nan"),
                  "val_top5": float("nan"), "lr": float("nan")}], tmp_path / "empty.png")
    # The one-epoch picture differs from a picture with nothing plotted: its points are drawn.
    assert (imread(tmp_path / "one.png") != imread(tmp_path / "empty.png")).any()


# ---------------------------------------------------------------- scope

@pytest.mark.slow  # builds and traces an 86 M-parameter ViT (tens of seconds on a busy 2-core box)
@pytest.mark.torch
def test_inspect_says_when_a_model_is_outside_the_analysis(capsys):
    assert main(["inspect", "torchvision:vit_b_16"]) == 0
    out = capsys.readouterr().out
    assert "outside what the DeepMAD analysis covers" in out and "1 layer)" in out
    assert main(["inspect", "torchvision:resnet18"]) == 0
    assert "outside what the DeepMAD analysis covers" not in capsys.readouterr().out
