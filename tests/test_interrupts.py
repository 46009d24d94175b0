"""Fault injection: Ctrl-C, SIGTERM and SIGKILL at random moments of a real search, Pareto run and training.

Each run is the real CLI in its own session, so its process group holds it and every process it
started (workers, the forkserver, the resource tracker); "no process left" means that group is
empty. After each fault: no file is corrupt (every JSON parses, no temp file survives a rerun) and a
rerun resumes or recomputes to the same answer as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from deepmad_evo.config import CONFIG_DIR
from proctools import group_members, kill_group, start_cli, wait_group_empty

# Seconds: what is asserted is generous for a loaded 2-core machine; what is measured is printed.
STOP_WITHIN = 5.0
GONE_WITHIN = 5.0
RNG = random.Random()


@pytest.fixture(autouse=True)
def _fault_seed():
    """Each test draws its fault moments from its own seed and prints it (pytest shows it when the test
    fails): ``FAULT_SEED=<seed> python -m pytest -m slow -k <test>`` replays the same moments."""
    seed = int(os.environ["FAULT_SEED"]) if "FAULT_SEED" in os.environ else time.time_ns() % 2**32
    RNG.seed(seed)
    print(f"FAULT_SEED={seed}")


def _long_config(tmp_path: Path, generations: int = 400) -> Path:
    """The tiny preset with a search long enough to be interrupted (~a minute on 2 cores)."""
    text = (CONFIG_DIR / "tiny.toml").read_text()
    text, n = re.subn(r"(?m)^generations = \d+$", f"generations = {generations}", text)
    text, m = re.subn(r"(?m)^chains = \d+$", "chains = 4", text)
    assert n == 1 and m == 1, "configs/tiny.toml changed shape: [search] generations / chains not found"
    path = tmp_path / "long.toml"
    path.write_text(text)
    return path


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _finish(p, t_signal: float):
    """Wait for the CLI to exit; returns (returncode, stderr, seconds since the signal, processes left)."""
    try:
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            kill_group(p.pid)
    stopped = time.monotonic() - t_signal
    left = wait_group_empty(p.pid, GONE_WITHIN)
    kill_group(p.pid)  # never leak into the rest of the suite, whatever the assertion says
    return p.returncode, err, stopped, left


def _no_temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")] if folder.exists() else []


def _start_search(tmp_path, out, config):
    p = start_cli("--config", config, "--out", out, "--no-build", cwd=tmp_path)
    # Wait until the pool is up (the CLI plus at least two more processes), then a random moment.
    _wait(lambda: len(group_members(p.pid)) >= 3 or p.poll() is not None, 120, "the search's workers")
    assert p.poll() is None, p.communicate()
    delay = RNG.uniform(0.0, 1.5)
    time.sleep(delay)
    return p, delay


@pytest.mark.parametrize("how", ["SIGINT", pytest.param("SIGINT twice", marks=pytest.mark.slow),
                                 pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_interrupting_a_search_stops_it_at_once(tmp_path, how):
    out = tmp_path / "run"
    p, delay = _start_search(tmp_path, out, _long_config(tmp_path))
    t0 = time.monotonic()
    if how == "SIGTERM":
        os.kill(p.pid, signal.SIGTERM)
    else:
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        if how == "SIGINT twice":
            time.sleep(0.2)
            os.killpg(p.pid, signal.SIGINT)
    rc, err, stopped, left = _finish(p, t0)
    print(f"{how} {delay:.2f} s into the search: exit {rc} after {stopped:.2f} s, left {left}")
    assert rc == 130 and err == "interrupted\n", (rc, err)
    assert stopped < STOP_WITHIN and left == []
    assert not (out / "run.json").exists() and not (out / "genotype.json").exists()
    assert _no_temp_files(tmp_path) == []


def test_sigkill_of_a_search_leaves_no_worker_and_a_rerun_completes(tmp_path):
    out = tmp_path / "run"
    p, delay = _start_search(tmp_path, out, _long_config(tmp_path))
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGKILL)
    rc, err, stopped, left = _finish(p, t0)
    print(f"SIGKILL {delay:.2f} s into the search: processes left {left} {GONE_WITHIN} s later")
    assert rc == -signal.SIGKILL and left == []
    assert not (out / "run.json").exists()
    # The same folder then takes a (short) search that finishes and writes strict, complete files.
    rerun = start_cli("--config", "tiny", "--out", out, "--no-build", cwd=tmp_path)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    record = json.loads((out / "run.json").read_text(), parse_constant=pytest.fail)
    from deepmad_evo.genotype import Genotype, load_genotype

    assert Genotype.from_dict(record["genotype"]) == load_genotype(out / "genotype.json")
    assert _no_temp_files(out) == []


# ---------------------------------------------------------------- Pareto

BUDGETS = ["5M", "10M", "20M", "40M"]


def _pareto(tmp_path, out, *extra):
    return start_cli("pareto", "--config", "tiny", "--budget", *BUDGETS, "--jobs", "2", "--out", out, *extra,
                     cwd=tmp_path)


@pytest.fixture(scope="module")
def uninterrupted_pareto(tmp_path_factory):
    from deepmad_evo.config import load_config
    from deepmad_evo.pareto import budget_points, run_pareto
    from deepmad_evo.config import parse_quantity

    cfg = load_config("tiny")
    out = tmp_path_factory.mktemp("pareto-ref")
    return run_pareto(cfg, budget_points(cfg, [parse_quantity(b, "b") for b in BUDGETS]), out=out, jobs=1,
                      published=None)


def _designs(run):
    return [(p["label"], p["text"], p["objective"]) for p in run["points"]]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_pareto_keeps_finished_budgets_and_resumes(tmp_path, uninterrupted_pareto, how):
    out = tmp_path / "pareto"
    p = _pareto(tmp_path, out)
    # A random moment after the first budget finished (records are written the moment they finish).
    _wait(lambda: list(out.glob("budget-*.json")) or p.poll() is not None, 300, "a finished budget")
    delay = RNG.uniform(0.0, 2.0)
    time.sleep(delay)
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT) if how == "SIGINT" else os.kill(p.pid, signal.SIGKILL)
    rc, err, stopped, left = _finish(p, t0)
    kept = sorted(f.name for f in out.glob("budget-*.json"))
    print(f"{how} {delay:.2f} s after the first budget: exit {rc} after {stopped:.2f} s, left {left}, kept {kept}")
    assert left == []
    if how == "SIGINT" and rc != 0:  # rc 0: the run had finished before the signal came
        assert rc == 130 and err == "interrupted\n" and stopped < STOP_WITHIN
    assert kept
    for f in out.glob("budget-*.json"):
        json.loads(f.read_text(), parse_constant=pytest.fail)
    rerun = _pareto(tmp_path, out)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    result = json.loads((out / "pareto.json").read_text(), parse_constant=pytest.fail)
    assert sum(p["reused"] for p in result["points"]) >= len(kept)
    assert _designs(result) == _designs(uninterrupted_pareto)
    assert _no_temp_files(out) == []


def test_ctrl_c_on_pareto_with_workers_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "pareto"
    config = _long_config(tmp_path)
    p = start_cli("pareto", "--config", config, "--budget", "5M", "10M", "--jobs", "2", "--out", out, cwd=tmp_path)
    _wait(lambda: len(group_members(p.pid)) >= 4 or p.poll() is not None, 120, "the Pareto workers")
    time.sleep(RNG.uniform(0.0, 1.5))
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    rc, err, stopped, left = _finish(p, t0)
    print(f"Pareto SIGINT: exit {rc} after {stopped:.2f} s, left {left}")
    assert rc == 130 and err == "interrupted\n" and stopped < STOP_WITHIN and left == []
    assert _no_temp_files(tmp_path) == []


# ---------------------------------------------------------------- training

TINY = "i32_c3_n10 stem_k3_s2_c16 mbse_d1_k3_s2_b32_c16 mbse_d1_k3_s2_b64_c32 head_c128"


def _recipe(tmp_path: Path, epochs: int) -> Path:
    from deepmad_evo.train import CONFIG_DIR as TRAIN_CONFIGS

    path = tmp_path / "recipe.toml"
    path.write_text(TRAIN_CONFIGS.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 96")
                    .replace("fake_val_images = 64", "fake_val_images = 16").replace("epochs = 2", f"epochs = {epochs}")
                    .replace("auto_augment = \"imagenet\"", "auto_augment = \"none\""))
    return path


def _train(tmp_path, out, recipe, *extra):
    return start_cli("train", TINY, "--config", recipe, "--batch-size", "16", "--out", out, "--device", "cpu", *extra,
                     cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path, how):
    import torch

    recipe = _recipe(tmp_path, epochs=6)
    reference = tmp_path / "reference"
    p = _train(tmp_path, reference, recipe)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err

    out = tmp_path / "run"
    p = _train(tmp_path, out, recipe)
    _wait(lambda: (out / "checkpoint.pt").exists() or p.poll() is not None, 600, "the first checkpoint")
    delay = RNG.uniform(0.0, 3.0)
    time.sleep(delay)
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT) if how == "SIGINT" else os.kill(p.pid, signal.SIGKILL)
    rc, err, stopped, left = _finish(p, t0)
    print(f"training {how} {delay:.2f} s after the first checkpoint: exit {rc} after {stopped:.2f} s, left {left}, "
          f"temp files {[f.name for f in _no_temp_files(out)]}")
    assert left == []
    if how == "SIGINT" and rc != 0:
        assert rc == 130 and err == "interrupted\n" and stopped < STOP_WITHIN
        assert _no_temp_files(out) == []
    rerun = _train(tmp_path, out, recipe, "--resume")
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    assert _no_temp_files(out) == []  # a killed writer's leftover is removed by the rerun
    a = torch.load(reference / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
