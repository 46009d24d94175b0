"""The latency budget in the search, the report/inspect and the CLI, on synthetic tables (no timing)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepmad_evo.config import ConfigError, load_config
from deepmad_evo.latency.model import LatencyModel, model_for
from deepmad_evo.problem import Budget
from deepmad_evo.report import genotype_report
from deepmad_evo.search import InfeasibleBudgetError, SearchSettings, run_search
from tests.latency_synth import synthetic_table, tiny_table_file

RUN = str(Path(__file__).resolve().parents[1] / "run.py")
QUICK = SearchSettings(pop_size=30, generations=8, restarts=1, chains=2, perturbations=3, finish=3, jobs=1)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, RUN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    return tiny_table_file(tmp_path_factory.mktemp("lat"))


def _search(cfg, budget):
    return run_search(cfg.search_space(), budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                      convention=cfg.objective.convention, settings=QUICK, seed=0)


def test_search_honours_a_binding_latency_budget(table_path):
    cfg = load_config("tiny")
    model = model_for(table_path)
    free = _search(cfg, cfg.budget)
    t_free = model.predict(free.genotype)
    limit = 0.6 * t_free
    b = cfg.budget
    bound = _search(cfg, Budget(rho=b.rho, macs=b.macs, params=b.params, latency=limit, latency_table=str(table_path)))
    t = model.predict(bound.genotype)
    assert bound.feasible and t <= limit
    assert t > 0.8 * limit  # the budget is used, not just met
    assert bound.objective < free.objective


def test_infeasible_latency_budget_names_the_smallest_networks_latency(table_path):
    cfg = load_config("tiny")
    with pytest.raises(InfeasibleBudgetError, match="predicted latency"):
        _search(cfg, Budget(rho=0.5, latency=1e-6, latency_table=str(table_path)))


def test_budget_needs_a_table_and_config_checks_it(table_path, tmp_path):
    with pytest.raises(ValueError, match="latency table"):
        Budget(latency=1e-3)
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="--latency-table"):
        cfg.with_overrides(latency=1e-3)
    r50 = load_config("r50")
    with pytest.raises(ValueError, match="no timings of"):
        r50.with_overrides(latency=1e-3, latency_table=str(table_path))
    ok = cfg.with_overrides(latency=2e-3, latency_table=str(table_path))
    assert ok.to_dict()["budget"]["latency"] == 2e-3
    assert "latency" not in cfg.to_dict()["budget"]  # runs without a latency budget keep their identity


def test_report_has_per_stage_latency_summing_to_the_total(table_path):
    cfg = load_config("tiny")
    g = cfg.search_space().genotype(cfg.search_space().bounds[1])
    budget = Budget(rho=None, monotone=False, latency=1e-3, latency_table=str(table_path))
    rep = genotype_report(g, budget=budget)
    model = LatencyModel(synthetic_table([cfg], networks=6, overhead=(1.1, 2e-5, 1e-4)))
    assert rep["latency"] == pytest.approx(model.predict(g))
    assert sum(r["latency"] for r in rep["stages"]) + rep["latency_rest"] == pytest.approx(rep["latency"])
    assert rep["constraints"]["latency"] == {"value": rep["latency"], "limit": 1e-3, "ok": rep["latency"] <= 1e-3}


def test_inspect_cli_latency(table_path, tmp_path):
    g = "i64_c3_n10 stem_k3_s2_c16 mbse_d2_k3_s2_b48_c24 mbse_d2_k5_s2_b96_c48 mbse_d1_k3_s1_b192_c64 head_c256"
    p = cli("inspect", g, "--latency-table", table_path, "--latency", "1us", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["constraints"]["latency"]["ok"] is False and d["latency"] > 1e-6
    assert all("latency" in row for row in d["stages"])
    table = cli("inspect", g, "--latency-table", table_path)
    assert table.returncode == 0 and "latency" in table.stdout and "predicted latency" in table.stdout
    for args, field in (((g, "--latency", "5ms"), "--latency-table"),
                        ((g, "--latency", "5", "--latency-table", table_path), "--latency"),
                        ((g, "--latency-table", tmp_path / "missing.json"), "does not exist")):
        bad = cli("inspect", *args)
        assert bad.returncode == 2 and field in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps({**json.loads(Path(table_path).read_text()), "format": "other/1"}))
    bad = cli("inspect", g, "--latency-table", corrupt)
    assert bad.returncode == 2 and "format" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_search_cli_latency_budget(table_path, tmp_path):
    model = model_for(table_path)
    cfg = load_config("tiny")
    limit = 0.7 * model.predict(cfg.search_space().genotype(cfg.search_space().bounds[1]))
    limit_ms = f"{limit * 1e3:.4f}ms"
    out = tmp_path / "run"
    p = cli("--config", "tiny", "--latency", limit_ms, "--latency-table", table_path, "--out", out, "--no-build")
    assert p.returncode == 0, p.stderr
    rec = json.loads((out / "run.json").read_text())
    assert rec["config"]["budget"]["latency"] == pytest.approx(limit, rel=1e-4)
    assert rec["latency"]["predicted"] <= rec["latency"]["budget"] and rec["latency"]["measured"] is None
    assert "predicted latency" in p.stdout
    cross = cli("--config", "tiny", "--latency", limit_ms, "--latency-table", table_path, "--cross-check",
                "--out", tmp_path / "x", "--no-build")
    assert cross.returncode == 2 and "--cross-check" in cross.stderr


# ---------------------------------------------------------------- Pareto with latency on the x-axis

def test_pareto_over_latency_budgets(table_path, tmp_path):
    from dataclasses import replace

    from deepmad_evo.pareto import latency_points, run_pareto

    cfg = load_config("tiny").with_overrides(latency_table=str(table_path))
    cfg = replace(cfg, search=replace(cfg.search, pop_size=16, generations=8, restarts=1))
    model = model_for(table_path)
    small = model.predict(cfg.search_space().genotype(cfg.search_space().bounds[0]))
    budgets = [1.5 * small, 2.5 * small, 4 * small]
    run = run_pareto(cfg, latency_points(budgets), out=tmp_path, jobs=1, published=None)
    assert run["axis"] == "latency" and run["hypervolume"]["objectives"][1] == "latency/reference.latency"
    rows = run["points"]
    assert [r["budget"]["latency"] for r in rows] == sorted(budgets)
    for r in rows:
        assert r["feasible"] and r["budget"]["macs"] is None
        assert r["latency"] == pytest.approx(model.predict(cfg.search_space().template.genotype(
            *_searched(r["genotype"]))), rel=1e-12) and r["latency"] <= r["budget"]["latency"]
    objectives = [r["objective"] for r in rows]
    assert objectives == sorted(objectives)  # a larger latency budget never scores lower
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert run_pareto(cfg, latency_points(budgets), out=tmp_path, jobs=1, published=None)["points"] == \
        [{**r, "reused": True} for r in rows]  # resumed from the records


def _searched(g):
    st = g["stages"]
    return (g["stem"]["out"], [s["out"] for s in st], [s["btn"] for s in st], [s["k"] for s in st],
            [s["depth"] for s in st])


@pytest.mark.parametrize("argv, field", [
    (["--latency", "5ms"], "--latency-table"),
    (["--latency", "5ms", "--budget", "10M"], "--latency"),
    (["--latency", "5", "--latency-table", "TABLE"], "--latency"),
    (["--latency", "1us", "--latency-table", "TABLE"], "--latency"),
])
def test_pareto_cli_latency_bad_input(table_path, tmp_path, capsys, argv, field):
    from deepmad_evo import cli

    argv = [str(table_path) if a == "TABLE" else a for a in argv]
    assert cli.main(["pareto", "--config", "tiny", "--out", str(tmp_path), "--jobs", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err


def _one_line_exit_2(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_oversized_binary_and_foreign_tables_give_one_line_and_exit_2(table_path, tmp_path):
    from deepmad_evo.latency.table import load_table, table_digest
    from deepmad_evo.limits import MAX_TABLE_BYTES

    g = "i64_c3_n10 stem_k3_s2_c16 mbse_d2_k3_s2_b48_c24 mbse_d2_k5_s2_b96_c48 mbse_d1_k3_s1_b192_c64 head_c256"
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: nothing is written, and the reader must not read it
        f.truncate(MAX_TABLE_BYTES + 1)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    for path, needle in ((big, f"at most {MAX_TABLE_BYTES:,} bytes"), (binary, "binary"), (deep, "nested")):
        with pytest.raises(ValueError, match=needle):
            load_table(path)
        _one_line_exit_2(cli("inspect", g, "--latency-table", path), "--latency-table" if path != deep else "latency table",
                         needle)
        _one_line_exit_2(cli("--config", "tiny", "--latency", "1ms", "--latency-table", path, "--out",
                             tmp_path / "run", "--no-build"), needle)
    with pytest.raises(ValueError, match="at most"):
        table_digest(big)
    # A table measured on another machine: searching with it is allowed (prediction only), profiling into it is not.
    foreign = tmp_path / "foreign.json"
    data = json.loads(Path(table_path).read_text())
    data["device"]["name"] = "Another CPU 9000"
    foreign.write_text(json.dumps(data))
    _one_line_exit_2(cli("profile", "--config", "tiny", "--out", foreign, "--networks", "0"), "Another CPU 9000",
                     "--force")
