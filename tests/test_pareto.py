"""Tests of multi-budget Pareto runs: determinism over workers, monotonicity, the sweep, resume, outputs, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from deepmad_evo import cli
from deepmad_evo.config import CONFIG_DIR, load_config
from deepmad_evo.genotype import Genotype, load_genotype, save_genotype
from deepmad_evo.objective import evaluate
from deepmad_evo.pareto import (BudgetPoint, Sweep, budget_points, budget_seed, hypervolume, monotone_points,
                                quantity_label, reference_points, run_pareto, scaled_params)

BUDGETS = [5e6, 10e6, 20e6, 40e6]
SETTINGS = {"pop_size": 16, "generations": 8, "restarts": 1}


@pytest.fixture(scope="module")
def cfg():
    cfg = load_config("tiny")
    return replace(cfg, search=replace(cfg.search, **SETTINGS))


@pytest.fixture(scope="module")
def sweep(cfg):
    return Sweep(4e6, 40e6, scaled_params(cfg, 40e6))


@pytest.fixture(scope="module")
def serial(cfg, sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, run_pareto(cfg, budget_points(cfg, BUDGETS), out=out, jobs=1, sweep=sweep, published=None)


@pytest.fixture(scope="module")
def parallel(cfg, sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    return out, run_pareto(cfg, budget_points(cfg, BUDGETS), out=out, jobs=2, sweep=sweep, published=None)


def _designs(run):
    return [(p["label"], p["text"], p["objective"], p["source"]) for p in run["points"]]


def test_jobs_do_not_change_the_result(serial, parallel):
    (_, a), (_, b) = serial, parallel
    assert _designs(a) == _designs(b)
    assert [p["search_seed"] for p in a["points"]] == [p["search_seed"] for p in b["points"]]
    assert [p["text"] for p in a["sweep"]["front"]] == [p["text"] for p in b["sweep"]["front"]]
    assert a["hypervolume"] == b["hypervolume"]


def test_every_point_is_feasible_and_recorded_truthfully(cfg, serial):
    out, run = serial
    o = cfg.objective
    for p in run["points"]:
        g = load_genotype(out / f"genotype-{p['label']}.json")
        assert g == Genotype.from_dict(p["genotype"]) == Genotype.from_text(p["text"])
        ev = evaluate(g, o.alpha, o.beta, o.convention)  # recomputed, not read back
        assert ev.objective == pytest.approx(p["objective"], rel=1e-12)
        assert (ev.macs, ev.params) == (p["macs"], p["params"])
        assert ev.macs <= p["budget"]["macs"] and ev.params <= p["budget"]["params"]
        assert ev.rho <= cfg.budget.rho
        outs = [st.out for st in g.stages]
        assert outs == sorted(outs)


def test_larger_budget_never_scores_lower(serial):
    objectives = [p["objective"] for p in serial[1]["points"]]
    assert len(objectives) == len(BUDGETS)
    assert all(a <= b for a, b in zip(objectives, objectives[1:]))


def _record(objective, macs, params, feasible=True):
    return {"objective": objective, "macs": macs, "params": params, "feasible": feasible}


def test_monotone_points_carries_a_better_smaller_design_only_when_it_fits():
    points = [BudgetPoint(5e6, 1e5), BudgetPoint(10e6, 2e5), BudgetPoint(20e6, 1.5e5)]
    small = _record(100.0, 4e6, 1.8e5)  # fits 10M/200K but not 20M/150K (params)
    records = [small, _record(90.0, 9e6, 1.9e5), _record(80.0, 19e6, 1.4e5)]
    chosen = monotone_points(points, records)
    assert [source for _, source in chosen] == ["5M", "5M", "20M"]
    assert chosen[1][0] is small and chosen[2][0] is records[2]
    records[0] = _record(100.0, 4e6, 1.8e5, feasible=False)
    assert [source for _, source in monotone_points(points, records)] == ["5M", "10M", "20M"]


def test_per_budget_optimum_lies_on_or_above_the_front(cfg, serial, sweep):
    run = serial[1]
    front = run["sweep"]["front"]
    assert front
    for p in front:  # the front is feasible and within the swept range
        assert sweep.macs_min <= p["macs"] <= sweep.macs_max and p["params"] <= sweep.params_max
        assert p["rho"] <= cfg.budget.rho
    compared = [c for c in run["sweep"]["comparison"] if c["front_best"] is not None]
    assert len(compared) >= 3
    for c in compared:
        # A failure here means NSGA-II beat the per-budget search: run_search needs more effort.
        assert c["objective"] >= c["front_best"] - 1e-9 * abs(c["front_best"]), c


def test_front_is_mutually_non_dominated(serial):
    front = serial[1]["sweep"]["front"]
    keys = [(-p["objective"], p["macs"], p["params"]) for p in front]
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            if i != j:
                assert not (all(x <= y for x, y in zip(b, a)) and b != a), (front[j], front[i])


def test_hypervolume_is_the_area_under_the_staircase():
    # By hand: best objective 0 on [0, .2), 10 on [.2, .5), 30 on [.5, 1]; (20, .6) is dominated.
    assert hypervolume([10, 30, 20], [2, 5, 6], macs_ref=10) == pytest.approx(10 * 0.3 + 30 * 0.5)
    # One point in three objectives: a box 5 × (1 − .5) × (1 − .25).
    assert hypervolume([5], [1], [1], macs_ref=2, params_ref=4) == pytest.approx(5 * 0.5 * 0.75)
    assert hypervolume([], [], macs_ref=1) == 0.0


def test_png_and_json_are_written(serial):
    out, run = serial
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert json.loads((out / "pareto.json").read_text()) == json.loads(json.dumps(run))
    assert not list(out.glob(".*.tmp"))


def test_resume_after_interruption_skips_finished_budgets(cfg, serial, tmp_path):
    points = budget_points(cfg, BUDGETS)
    finished = []

    def stop_after_two(event):
        if event["event"] == "done":
            finished.append(event["label"])
            if len(finished) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pareto(cfg, points, out=tmp_path, jobs=1, callback=stop_after_two, published=None)
    assert sorted(p.name for p in tmp_path.glob("budget-*.json")) == ["budget-10M.json", "budget-5M.json"]
    assert not (tmp_path / "pareto.json").exists()

    events = []
    run = run_pareto(cfg, points, out=tmp_path, jobs=1, callback=events.append, published=None)
    assert events[0] == {"event": "start", "labels": ["5M", "10M", "20M", "40M"], "reused": ["5M", "10M"]}
    searched = [e["label"] for e in events if e["event"] == "done" and not e["reused"]]
    assert searched == ["20M", "40M"]
    assert [p["reused"] for p in run["points"]] == [True, True, False, False]
    assert _designs(run) == _designs(serial[1])


def test_interrupt_with_workers_stops_promptly_and_keeps_finished_budgets(cfg, tmp_path):
    points = budget_points(cfg, BUDGETS + [80e6, 160e6])

    def stop_at_first(event):
        if event["event"] == "done":
            raise KeyboardInterrupt

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_pareto(cfg, points, out=tmp_path, jobs=2, callback=stop_at_first, published=None)
    assert time.perf_counter() - t0 < 30
    assert 1 <= len(list(tmp_path.glob("budget-*.json"))) < len(points)


def test_a_directory_of_another_run_is_refused(cfg, tmp_path):
    points = budget_points(cfg, [5e6])
    run_pareto(cfg, points, out=tmp_path, jobs=1, published=None)
    other = cfg.with_overrides(seed=cfg.search.seed + 1)
    with pytest.raises(ValueError, match=r"^--out: .* holds budget 5M of a different run \(seed differs\); use a new --out"):
        run_pareto(other, budget_points(other, [5e6]), out=tmp_path, jobs=1, published=None)


def test_seeds_depend_on_run_seed_and_budget_only():
    a = budget_seed(0, BudgetPoint(4.5e9, 29e6))
    assert a == budget_seed(0, BudgetPoint(4.5e9, 29e6))
    assert len({a, budget_seed(1, BudgetPoint(4.5e9, 29e6)), budget_seed(0, BudgetPoint(4.5e9, 30e6)),
                budget_seed(0, BudgetPoint(8.7e9, 29e6))}) == 4


def test_quantity_labels():
    assert [quantity_label(v) for v in (0.4e9, 1.8e9, 4.5e9, 15.4e9, 2e7, 1e5, 512.0)] == \
        ["0.4G", "1.8G", "4.5G", "15.4G", "20M", "0.1M", "0.512K"]


def test_budget_points_scale_params_by_the_config_ratio(cfg):
    # tiny.toml: 20M MACs / 0.5M params.
    assert budget_points(cfg, [40e6, 10e6]) == (BudgetPoint(10e6, 0.25e6), BudgetPoint(40e6, 1e6))
    assert budget_points(cfg, [40e6, 10e6], [3e5, 1e5]) == (BudgetPoint(10e6, 1e5), BudgetPoint(40e6, 3e5))
    assert budget_points(cfg, [10e6], "off") == (BudgetPoint(10e6, None),)
    nomacs = replace(cfg, budget=replace(cfg.budget, macs=None))
    assert budget_points(nomacs, [10e6, 40e6]) == (BudgetPoint(10e6, 0.5e6), BudgetPoint(40e6, 0.5e6))
    with pytest.raises(ValueError, match=r"^--params: expected 2 values"):
        budget_points(cfg, [10e6, 40e6], [1e5])
    with pytest.raises(ValueError, match=r"^--budget: 10M is given twice"):
        budget_points(cfg, [10e6, 1e7])


def test_published_structures_are_plotted_only_when_they_fit(cfg, serial, tmp_path):
    g = Genotype.from_text(serial[1]["points"][1]["text"])
    save_genotype(g, tmp_path / "fits.json")
    other = replace(g, stages=tuple(replace(st, s=1) if i == 1 else st for i, st in enumerate(g.stages)))
    save_genotype(other, tmp_path / "other.json")
    (tmp_path / "README.md").write_text("not a structure")
    points, skipped = reference_points(cfg, tmp_path)
    o = cfg.objective
    assert [p["name"] for p in points] == ["fits"]
    assert points[0]["objective"] == pytest.approx(evaluate(g, o.alpha, o.beta, o.convention).objective, rel=1e-12)
    assert skipped == [{"name": "other", "reason": "does not fit the template: strides 2,1,1 ≠ 2,2,1"}]
    assert reference_points(cfg, tmp_path / "absent") == ([], [])


def test_published_r18_is_a_reference_point_of_the_r18_template(published):
    points, skipped = reference_points(load_config("r18"), published)
    r18 = {p["name"]: p for p in points}["deepmad-r18-published"]
    # DESIGN.md §5 golden values (tinynas convention, α = (1,1,1,1,8), β = 10).
    assert r18["objective"] == pytest.approx(31661.31351721937, rel=1e-9)
    assert (r18["macs"], r18["params"]) == (1837323208, 11153088)
    assert "deepmad-29m-224-published" in {s["name"] for s in skipped}


def test_pareto_module_imports_neither_torch_nor_rich_nor_matplotlib():
    code = ("import sys, deepmad_evo.pareto\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rich', 'matplotlib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------- CLI

@pytest.fixture
def pareto_cli():
    def run(*argv):
        try:
            return cli.main(["pareto", *argv])
        except SystemExit as exc:  # argparse's own errors exit from inside the parser
            return exc.code

    return run


@pytest.mark.parametrize("argv, field", [
    (["--budget", "4.5X"], "--budget"),
    (["--budget", "10M", "20M", "--params", "1M"], "--params"),
    (["--budget", "10M", "--jobs", "0"], "--jobs"),
    (["--budget", "10M", "--jobs", "two"], "--jobs"),
    (["--budget", "1K"], "--budget"),
    ([], "--budget"),
    (["--sweep", "40M", "4M"], "--sweep"),
])
def test_cli_bad_input_is_one_line_and_exit_2(pareto_cli, capsys, tmp_path, argv, field):
    assert pareto_cli("--config", "tiny", "--out", str(tmp_path), *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and field in err, err


def test_cli_unknown_config_is_one_line(pareto_cli, capsys):
    assert pareto_cli("--config", "no-such-preset", "--budget", "1G") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--config" in err, err


def test_cli_runs_and_resumes(pareto_cli, capsys, tmp_path):
    text = (CONFIG_DIR / "tiny.toml").read_text()
    text = text.replace("pop_size = 40", "pop_size = 16").replace("generations = 20", "generations = 8")
    config = tmp_path / "quick.toml"
    config.write_text(text)
    out = tmp_path / "run"
    assert pareto_cli("--config", str(config), "--budget", "5M", "10M", "--jobs", "1", "--out", str(out)) == 0
    first = capsys.readouterr().out
    assert "5M" in first and "10M" in first and "hypervolume" in first
    assert (out / "pareto.png").stat().st_size > 0 and (out / "genotype-10M.json").is_file()
    assert pareto_cli("--config", str(config), "--budget", "5M", "10M", "--jobs", "1", "--out", str(out)) == 0
    assert "(reused)" in capsys.readouterr().out


def test_a_point_is_the_standalone_search_of_its_budget(cfg, serial):
    from deepmad_evo.pareto import point_budget
    from deepmad_evo.search import run_search

    out, run = serial
    point = run["points"][1]
    budget = point_budget(cfg, point["budget"]["macs"], point["budget"]["params"])
    standalone = run_search(cfg.search_space(), budget,
                            alpha=cfg.objective.alpha, beta=cfg.objective.beta, convention=cfg.objective.convention,
                            settings=cfg.search_settings(), seed=cfg.search.seed)
    own = json.loads((out / f"budget-{point['label']}.json").read_text())
    assert own["text"] == standalone.genotype.to_text()
    assert own["objective"] == standalone.objective
    if point["source"] == point["label"]:
        assert point["text"] == standalone.genotype.to_text()
