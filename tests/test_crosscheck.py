"""The cross-check command end to end: `run.py cross-check` and `run.py --cross-check`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepmad_evo.genotype import load_genotype
from deepmad_evo.objective import evaluate

RUN = str(Path(__file__).resolve().parents[1] / "run.py")
# A feasible genotype of the tiny preset's template (20 MMACs, 0.5 M params, ρ0 0.5, torch).
TINY = "i64_c3_n10 stem_k3_s2_c16 mbse_d1_k5_s2_b64_c40 mbse_d4_k5_s2_b136_c88 mbse_d4_k5_s1_b144_c96 head_c256"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cross_check_a_genotype_json_and_table(tmp_path):
    p = cli("cross-check", TINY, "--json", "--out", tmp_path / "cc.json")
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout)
    assert record == json.loads((tmp_path / "cc.json").read_text())
    assert record["config"]["name"] == "tiny"  # found from the genotype's template
    ga = evaluate(load_genotype(TINY), alpha=(1, 1, 8)).objective
    assert record["ga_objective"] == pytest.approx(ga)
    assert record["relaxed_objective"] >= ga and record["gap"] >= 0
    assert record["gap"] == pytest.approx((record["relaxed_objective"] - ga) / record["relaxed_objective"])
    assert [s["origin"] for s in record["starts"]] == ["ga", "random[0]", "random[1]", "random[2]", "ga-depths"]

    table = cli("cross-check", TINY, "--starts", "1")
    assert table.returncode == 0, table.stderr
    for text in ("GA vs continuous relaxation", "relaxed  out/btn · depth", "stage3", "gap (relaxed − GA)/relaxed",
                 "random[0]", "ga-depths"):
        assert text in table.stdout


def test_search_with_cross_check_records_it_and_returns_the_better_genotype(tmp_path):
    out = tmp_path / "run"
    p = cli("--config", "tiny", "--cross-check", "--out", out)
    assert p.returncode == 0, p.stderr
    record = json.loads((out / "run.json").read_text())
    cc = record["cross_check"]
    for key in ("ga_objective", "relaxed_objective", "rounded_objective", "gap", "solver_seconds"):
        assert isinstance(cc[key], float)
    g = load_genotype(out / "genotype.json")
    best = max(cc["ga_objective"], cc["rounded_objective"])
    assert evaluate(g, alpha=(1, 1, 8)).objective == pytest.approx(best)
    assert record["objective"] == pytest.approx(best)
    assert "GA vs continuous relaxation" in p.stdout and "best network" in p.stdout


@pytest.mark.parametrize("args, message", [
    (["cross-check", "i32_c3_n10 stem_k3_s2_c16 mb_d1_k3_s2_b48_c24"], "genotype: no preset has its template"),
    (["cross-check", TINY, "--config", "r18"], "genotype: its template"),
    (["cross-check", TINY, "--starts", "-1"], "--starts: expected an integer >= 0, got -1"),
    (["cross-check", TINY, "--tolerance", "5"], "--tolerance: expected a fraction in (0, 1), got 5.0"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    p = cli(*args)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
