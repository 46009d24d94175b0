"""The closed latency loop with a fake timer: deterministic decisions, no timing in the tests."""

import json

import pytest

from deepmad_evo.config import load_config
from deepmad_evo.latency.loop import MAX_ROUNDS, MAX_SLACK, accepts, honour_budget, next_target
from deepmad_evo.latency.model import model_for
from tests.latency_synth import tiny_table_file

T = 10e-3


def test_acceptance_forgives_the_measurements_own_noise_up_to_the_cap():
    assert accepts(T, T, 0.0)
    assert not accepts(T, T * 1.001, 0.0)
    assert accepts(T, T * 1.02, 0.025) and not accepts(T, T * 1.03, 0.025)
    assert not accepts(T, T * (1 + MAX_SLACK) * 1.001, 0.5)  # a very noisy timing is forgiven MAX_SLACK at most
    assert next_target(T, 0.9 * T, 1.2 * T) == pytest.approx(0.75 * T)


def _fake_search(designs):
    """A search over a fixed menu: the best design whose predicted latency fits the target."""
    calls = []

    def search(target):
        calls.append(target)
        fits = [d for d in designs if d[2] <= target]
        return max(fits, key=lambda d: d[1]) if fits else None
    return search, calls


# (name, objective, predicted): objective grows with predicted latency.
MENU = [(f"g{i}", float(i), i * 1e-3) for i in range(1, 11)]


def test_a_design_measuring_over_budget_is_searched_again_under_a_tightened_budget():
    search, calls = _fake_search(MENU)
    seen = []
    res = honour_budget(T, search, lambda g: {"seconds": 1.15 * dict((d[0], d[2]) for d in MENU)[g], "noise": 0.01,
                                              "load": 0.5}, on_round=lambda r, nxt: seen.append(nxt))
    # g10 predicted 10 ms measures 11.5 ms: the next target is 10 ms × 10/11.5 = 8.7 ms → g8 (9.2 ms measured).
    assert [r.target for r in res.rounds] == pytest.approx([T, T / 1.15])
    assert [r.accepted for r in res.rounds] == [False, True]
    assert res.genotype == "g8" and res.objective == 8.0 and res.honoured and res.chosen == 1
    assert calls == pytest.approx([T, T / 1.15]) and seen == [pytest.approx(T / 1.15), None]
    assert res.to_dict()["rounds"][0]["measured"] == pytest.approx(11.5e-3)


def test_a_design_within_budget_and_noise_ends_the_loop_at_once():
    search, calls = _fake_search(MENU)
    res = honour_budget(T, search, lambda g: {"seconds": 1.02 * T, "noise": 0.03, "load": None})
    assert len(res.rounds) == 1 and res.honoured and res.genotype == "g10" and calls == [T]


def test_same_measurements_give_the_same_decisions():
    timings = {"g10": 11e-3, "g9": 10.4e-3, "g8": 9.9e-3, "g7": 8e-3}

    def run():
        search, calls = _fake_search(MENU)
        return honour_budget(T, search, lambda g: {"seconds": timings[g], "noise": 0.0}), calls

    (a, ca), (b, cb) = run(), run()
    assert a.to_dict() == b.to_dict() and ca == cb
    # 10 ms → 11 ms: target 9.09 ms → g9 (9 ms predicted) measures 10.4 ms: target 9 × 10/10.4 = 8.65 ms → g8.
    assert a.genotype == "g8" and [r.accepted for r in a.rounds] == [False, False, True]


def test_never_honoured_keeps_the_fastest_measured_design_and_says_so():
    search, calls = _fake_search(MENU)
    res = honour_budget(T, search, lambda g: {"seconds": 0.2 + 1e-3 * int(g[1:]) % 3, "noise": 0.0})
    assert not res.honoured and len(res.rounds) <= MAX_ROUNDS
    fastest = min(res.rounds, key=lambda r: r.measured)
    assert res.rounds[res.chosen] == fastest and res.objective == fastest.objective
    # Ever-tighter targets end when nothing fits (search returns None) or after MAX_ROUNDS searches.
    assert len(calls) <= MAX_ROUNDS
    with pytest.raises(ValueError, match="max_rounds"):
        honour_budget(T, search, lambda g: {"seconds": T}, max_rounds=0)


# ---------------------------------------------------------------- the search command, with a fake timer

@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    return tiny_table_file(tmp_path_factory.mktemp("loop"))


def _fake_timer(monkeypatch, factor):
    import deepmad_evo.latency.profile as profile

    real = profile.time_winner
    timed = []

    def fake(genotype, budget, timed_=True, rounds=7, **kw):
        rec = real(genotype, budget, timed=False)
        rec.pop("not_timed")
        timed.append(genotype.to_text())
        rec.update(measured=factor * rec["predicted"], noise=0.01, load=0.3, clock="fake")
        return rec

    monkeypatch.setattr(profile, "time_winner", lambda g, b, timed=True, rounds=7: fake(g, b, timed, rounds))
    return timed


def test_search_cli_runs_the_closed_loop_and_records_every_round(table_path, tmp_path, monkeypatch, capsys):
    from deepmad_evo.cli import main

    timed = _fake_timer(monkeypatch, 1.12)
    from deepmad_evo.search import SearchSettings, run_search

    cfg = load_config("tiny")
    free = run_search(cfg.search_space(), cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                      convention=cfg.objective.convention, seed=0,
                      settings=SearchSettings(pop_size=30, generations=8, restarts=1, chains=2, perturbations=3,
                                              finish=3, jobs=1))
    limit = 0.6 * model_for(table_path).predict(free.genotype)  # binding: the MAC budget alone allows more
    out = tmp_path / "run"
    argv = ["--config", "tiny", "--latency", f"{limit * 1e3:.4f}ms", "--latency-table", str(table_path), "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    rec = json.loads((out / "run.json").read_text())
    loop = rec["latency"]["loop"]
    assert loop["honoured"] and len(loop["rounds"]) >= 2 and loop["chosen"] == len(loop["rounds"]) - 1
    first, last = loop["rounds"][0], loop["rounds"][-1]
    assert not first["accepted"] and first["measured"] == pytest.approx(1.12 * first["predicted"])
    assert loop["rounds"][1]["target"] == pytest.approx(loop["budget"] / 1.12)  # predicted × T / (1.12 × predicted)
    assert last["accepted"] and rec["latency"]["measured"] <= rec["latency"]["budget"] * 1.01
    assert rec["text"] == loop["designs"][-1] and rec["objective"] == pytest.approx(last["objective"])
    assert json.loads((out / "genotype.json").read_text())["stages"] == rec["genotype"]["stages"]
    assert "searching again under a predicted-latency budget" in text and "closed loop" in text
    assert timed == loop["designs"]  # every round's design timed once
    # Shown again from the run directory: no search and no timing, the loop's outcome printed.
    timed.clear()
    assert main(argv) == 0
    assert timed == [] and "closed loop" in capsys.readouterr().out
