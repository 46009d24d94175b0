"""The CLI end to end in a temp dir: search writes its files, inspect reports, bad input exits 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepmad_evo.genotype import load_genotype
from deepmad_evo.objective import evaluate

RUN = str(Path(__file__).resolve().parents[1] / "run.py")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_search_writes_genotype_and_run_record(tmp_path):
    out = tmp_path / "run"
    # --no-build: building the winner imports torch (seconds per subprocess); tests/test_build.py covers it.
    p = cli("--config", "tiny", "--seed", "3", "--out", out, "--no-build")
    assert p.returncode == 0, p.stderr
    g = load_genotype(out / "genotype.json")
    record = json.loads((out / "run.json").read_text())
    assert record["seed"] == 3 and record["config"]["name"] == "tiny"
    assert record["config"]["budget"]["macs"] == 20e6
    assert record["history"] and record["wall_seconds"] > 0 and record["evaluations"] > 0
    assert record["objective"] == pytest.approx(evaluate(g, convention="torch", alpha=(1, 1, 8)).objective)
    assert "best network" in p.stdout and "✓" in p.stdout
    # Same command again: the finished run is recognised, not recomputed or lost.
    again = cli("--config", "tiny", "--seed", "3", "--out", out, "--no-build")
    assert again.returncode == 0 and "already holds this search" in again.stdout
    assert load_genotype(out / "genotype.json") == g


def test_search_subcommand_and_overrides(tmp_path):
    p = cli("search", "--config", "tiny", "--budget", "15M", "--params", "0.3M", "--rho", "0.45",
            "--convention", "tinynas", "--out", tmp_path / "r", "--no-build")
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert cfg["budget"] == {"rho": 0.45, "macs": 15e6, "params": 0.3e6, "max_layers": None, "monotone": True}
    ev = evaluate(load_genotype(tmp_path / "r" / "genotype.json"), alpha=(1, 1, 8), convention="tinynas")
    assert ev.macs <= 15e6 and ev.params <= 0.3e6 and ev.rho <= 0.45


def test_inspect_json_keys(published):
    p = cli("inspect", published / "deepmad-R18.txt", "--json", "--convention", "tinynas")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    for key in ("macs", "params", "rho", "rho_prefix", "entropy", "entropy_terms", "depth_penalty", "objective",
                "layers", "convention", "segments"):
        assert key in d
    assert d["macs"] == 1_837_323_208 and d["params"] == 11_153_088 and d["layers"] == 115
    assert d["objective"] == pytest.approx(31661.31351721937, rel=1e-9)


def test_inspect_table_with_budgets(published):
    p = cli("inspect", published / "deepmad-R18.txt", "--convention", "tinynas", "--budget", "1.82G",
            "--params", "11.69M", "--rho", "0.3")
    assert p.returncode == 0, p.stderr
    assert "✗ macs" in p.stdout and "✓ params" in p.stdout and "✓ ρ" in p.stdout
    assert "stage5" in p.stdout


def test_inspect_text_form():
    p = cli("inspect", "i64_c3_n10 stem_k3_s2_c16 mb_d2_k3_s2_b48_c24 head_c64", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["layers"] == 1 + 6 + 1


@pytest.mark.parametrize("args, message", [
    (["--budget", "4.5Q"], "--budget: expected a positive number with an optional K/M/G/T suffix (e.g. 4.5G), got '4.5Q'"),
    (["--budget=-3G"], "--budget: expected a positive number"),
    (["--config", "tiny", "--budget", "1K"], "budget: infeasible; the smallest network this space allows has MACs"),
    (["--config", "nope"], "--config: 'nope' is neither a file nor a preset; presets:"),
    (["--block", "vit"], "error: --block: invalid choice: 'vit'"),
    (["inspect", "/no/such.json"], "genotype: '/no/such.json' is neither a run directory, a readable file, a genotype "
                                   "text form nor a zoo model"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    p = cli(*args) if args[0] == "inspect" else cli(*args, "--out", tmp_path / "x")
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_unknown_config_key(tmp_path):
    bad = tmp_path / "bad.toml"
    src = (Path(__file__).resolve().parents[1] / "configs" / "tiny.toml").read_text()
    bad.write_text(src.replace("[budget]", "[budget]\ncolour = 3"))
    p = cli("--config", bad, "--out", tmp_path / "x")
    assert p.returncode == 2
    assert f"{bad}: unknown key budget.colour; expected one of" in p.stderr


def test_malformed_genotype_file(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text('{"format": "deepmad-evo/genotype/1", "stem": {"out": 8, "k": 4, "s": 2}, "stages": []}')
    p = cli("inspect", bad)
    assert p.returncode == 2 and "stem.k: expected an odd integer >= 1, got 4" in p.stderr


def test_a_ctrl_c_after_a_finished_run_does_not_kill_the_process():
    """The interrupt test caught it at random: SIGINT landing after the command finished but before
    the interpreter exited killed a successful run by the signal (status -2) instead of exit 0."""
    script = ("import os, signal, sys\n"
              "from deepmad_evo.cli import main\n"
              "sys.argv = ['deepmad-evo', 'presets']\n"
              "status = main()\n"
              "os.kill(os.getpid(), signal.SIGINT)\n"
              "sys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(RUN).parent)
    assert done.returncode == 0, done.stderr[-2000:]
