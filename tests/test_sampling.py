"""Random budget-matched networks stratified over ρ (`sample`): budgets, strata, determinism, files, CLI."""

import json

import numpy as np
import pytest

from deepmad_evo.cli import main as cli_main
from deepmad_evo.config import load_config
from deepmad_evo.genotype import Genotype, load_genotype
from deepmad_evo.objective import evaluate
from deepmad_evo.problem import Budget
from deepmad_evo.studies.sampling import SamplingError, load_samples, sample_networks, write_samples


@pytest.fixture(scope="module")
def digits():
    cfg = load_config("digits")
    return cfg, cfg.search_space()


@pytest.fixture(scope="module")
def drawn(digits):
    cfg, space = digits
    return sample_networks(space, cfg.budget, 8, (0.25, 0.9), tolerance=0.05, alpha=cfg.objective.alpha, seed=3)


def test_every_network_matches_both_budgets_and_fills_its_own_stratum(digits, drawn):
    cfg, _ = digits
    assert len(drawn.samples) == 8
    edges = np.linspace(0.25, 0.9, 9)
    for k, s in enumerate(drawn.samples):
        # Independent check: the single-network evaluator (layer list), not the vectorised one the sampler used.
        ev = evaluate(s.genotype, cfg.objective.alpha, cfg.objective.beta, cfg.objective.convention)
        assert 0.95 * cfg.budget.macs <= ev.macs <= cfg.budget.macs
        assert 0.95 * cfg.budget.params <= ev.params <= cfg.budget.params
        assert edges[k] <= ev.rho < edges[k + 1]
        assert s.rho == pytest.approx(ev.rho) and s.entropy == pytest.approx(ev.entropy)
        assert s.objective == pytest.approx(ev.objective) and (s.macs, s.params) == (ev.macs, ev.params)
        outs = [st.out for st in s.genotype.stages]
        assert outs == sorted(outs)  # the preset asks for non-decreasing stage channels
    assert len({s.genotype.to_text() for s in drawn.samples}) == 8


def test_same_seed_same_networks_other_seed_others(digits, drawn):
    cfg, space = digits
    again = sample_networks(space, cfg.budget, 8, (0.25, 0.9), tolerance=0.05, alpha=cfg.objective.alpha, seed=3)
    other = sample_networks(space, cfg.budget, 8, (0.25, 0.9), tolerance=0.05, alpha=cfg.objective.alpha, seed=4)
    assert [s.x for s in again.samples] == [s.x for s in drawn.samples]
    assert [s.x for s in other.samples] != [s.x for s in drawn.samples]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "--n: expected an integer from 1 to 10000"),
    (dict(rho_range=(0.9, 0.2)), "--rho-range: expected 0 < MIN < MAX"),
    (dict(rho_range=(0.1, float("nan"))), "--rho-range: expected 0 < MIN < MAX"),
    (dict(tolerance=1.5), "--tolerance: expected a fraction between 0 and 1"),
    (dict(budget=Budget(rho=0.5, macs=3e6, params=None)), "sampling needs both a MAC budget"),
    (dict(rho_range=(20.0, 30.0), max_rounds=2), "strata stayed empty after 2 rounds"),
])
def test_bad_requests_fail_with_one_line_naming_the_flag(digits, kwargs, message):
    cfg, space = digits
    args = dict(budget=cfg.budget, n=4, rho_range=(0.3, 0.6), tolerance=0.05, seed=0, max_rounds=5) | kwargs
    with pytest.raises(SamplingError, match=message.replace("(", r"\(").replace("[", r"\[")):
        sample_networks(space, args.pop("budget"), args.pop("n"), args.pop("rho_range"), **args)


def test_unreachable_range_names_the_reached_range(digits):
    cfg, space = digits
    with pytest.raises(SamplingError, match=r"reached rho [0-9.]+ to [0-9.]+ within 5 % of both budgets"):
        sample_networks(space, cfg.budget, 2, (5.0, 6.0), seed=0, max_rounds=2)


def test_written_directory_round_trips(tmp_path, digits, drawn):
    cfg, _ = digits
    ref = Genotype.from_text(drawn.samples[0].genotype.to_text())
    write_samples(drawn, tmp_path, cfg.to_dict(), (ref, {"rho0": 0.5, "rho": 0.4}))
    index = load_samples(tmp_path)
    assert [s["text"] for s in index["samples"]] == [s.genotype.to_text() for s in drawn.samples]
    assert index["reference"]["name"] == "deepmad" and index["config"] == cfg.to_dict()
    assert load_genotype(tmp_path / "genotypes" / "003.json") == drawn.samples[3].genotype
    assert not list(tmp_path.rglob("*.tmp"))
    (tmp_path / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a deepmad-evo/samples/1 index"):
        load_samples(tmp_path)
    with pytest.raises(ValueError, match="holds no index.json"):
        load_samples(tmp_path / "genotypes")


def test_cli_sample_writes_index_genotypes_and_picture(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sample", "--config", "digits", "--n", "3", "--rho-range", "0.3", "0.7", "--out", str(out)]
    assert cli_main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["n"] == 3 and index["reference"]["rho"] <= 0.5 + 1e-9
    assert (out / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "genotypes").iterdir()) == ["000.json", "001.json", "002.json", "deepmad.json"]
    assert cli_main(argv) == 0 and "already holds this sample" in capsys.readouterr().out
    assert cli_main(argv[:-4] + ["0.3", "0.8", "--out", str(out)]) == 2
    assert "holds another sample" in capsys.readouterr().err
