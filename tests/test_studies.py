"""Studies and tuning on CPU: trials run once and resume, failures are recorded, successive halving stops the worst."""

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from deepmad_evo import train as T  # noqa: E402
from deepmad_evo.genotype import Genotype  # noqa: E402
from deepmad_evo.studies import study as study_mod  # noqa: E402
from deepmad_evo.studies import trial as trial_mod  # noqa: E402
from deepmad_evo.studies.executors import LocalExecutor  # noqa: E402
from deepmad_evo.studies.sampling import SampleSet, Sample, write_samples  # noqa: E402
from deepmad_evo.studies.study import run_study  # noqa: E402
from deepmad_evo.studies.tune import rungs_of, tune_local  # noqa: E402
from deepmad_evo.problem import Budget  # noqa: E402

NETS = ["i32_c3_n10 stem_k3_s2_c8 mbse_d1_k3_s2_b16_c8 mbse_d1_k3_s2_b24_c16 head_c32",
        "i32_c3_n10 stem_k3_s2_c8 mbse_d1_k3_s2_b24_c16 mbse_d1_k3_s2_b48_c16 head_c32",
        "i32_c3_n10 stem_k3_s2_c8 mbse_d2_k3_s2_b16_c8 mbse_d1_k5_s2_b24_c16 head_c32"]


def recipe(**changes):
    """FakeData, no augmentation: the machinery in a second per epoch."""
    return T.load_train_config("smoke").with_overrides(**{
        "image_size": 32, "workers": 0, "fake_images": 64, "fake_val_images": 32, "batch_size": 32, "epochs": 2,
        "warmup_epochs": 0.0, "crop": "center", "auto_augment": "none", "random_erasing": 0.0, "mixup": 0.0,
        "cutmix": 0.0, **changes})


def write_sample_dir(path, texts=NETS[:2], reference=NETS[2]):
    samples = tuple(Sample(i, Genotype.from_text(t), (), 0.2 + 0.1 * i, 100.0 + i, 90.0 + i, 1e6, 1e4, (0.0, 1.0))
                    for i, t in enumerate(texts))
    result = SampleSet(samples, (0.1, 0.5), 0.05, Budget(rho=0.5, macs=1e6, params=1e4), 0, 1, 1)
    write_samples(result, path, None, (Genotype.from_text(reference), {"rho0": 0.25, "rho": 0.25, "entropy": 99.0,
                                                                       "objective": 95.0, "macs": 1e6, "params": 1e4}))
    return path


def test_study_trains_each_network_once_and_writes_table_and_figure(tmp_path, monkeypatch, one_thread):
    samples = write_sample_dir(tmp_path / "samples")
    result = run_study(samples, tmp_path / "study", recipe())
    assert [r["name"] for r in result.rows] == ["000", "001", "deepmad"]
    assert all(r["status"] == "done" and r["epochs"] == 2 and 0 <= r["top1"] <= 100 for r in result.rows)
    table = (tmp_path / "study" / "study.csv").read_text().splitlines()
    assert table[0].startswith("name,kind,rho,entropy,objective,macs,params,top1") and len(table) == 4
    assert json.loads((tmp_path / "study" / "study.json").read_text())["rho0"] == 0.25
    assert (tmp_path / "study" / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    # The metrics the table reports are the trainer's own last-epoch validation numbers.
    metrics = json.loads((tmp_path / "study" / "models" / "001" / "metrics.json").read_text())["epochs"]
    assert result.rows[1]["top1"] == metrics[-1]["val_top1"]

    def never(*args, **kwargs):
        raise AssertionError("a finished network was trained again")

    monkeypatch.setattr(T, "train", never)
    again = run_study(samples, tmp_path / "study", recipe())
    assert [r["top1"] for r in again.rows] == [r["top1"] for r in result.rows]


def test_interrupted_trial_resumes_from_its_last_epoch(tmp_path, one_thread):
    spec = {"name": "x", "genotype": NETS[0], "recipe": trial_mod.recipe_dict(recipe(epochs=3)),
            "out": str(tmp_path / "x"), "threads": 1}
    reference = trial_mod.run_trial({**spec, "out": str(tmp_path / "ref")})

    def interrupt(event):
        if event.kind == "epoch" and event.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trial_mod.run_trial(spec, interrupt)
    assert trial_mod.trained_epochs(spec) == 1 and trial_mod.finished(spec) is None
    resumed = trial_mod.run_trial(spec)
    assert resumed["status"] == "done" and resumed["epochs"] == 3
    assert resumed["history"] == reference["history"]  # bit-for-bit the same run as without the interruption


def test_failed_trials_are_retried_then_reported_not_lost(tmp_path, monkeypatch, one_thread):
    samples = write_sample_dir(tmp_path / "samples")
    calls = []
    real = trial_mod.run_trial

    def flaky(spec, callback=None):
        calls.append(spec["name"])
        if spec["name"] == "001":
            raise RuntimeError("CUDA error: out of memory\nsecond line")
        return real(spec, callback)

    monkeypatch.setattr(study_mod, "run_trial", flaky)
    result = run_study(samples, tmp_path / "study", recipe(epochs=1), executor=LocalExecutor(retries=2))
    assert calls.count("001") == 3
    failed = result.failed
    assert [r["name"] for r in failed] == ["001"] and failed[0]["error"] == "RuntimeError: second line"
    rows = json.loads((tmp_path / "study" / "study.json").read_text())["rows"]
    assert {r["name"]: r["status"] for r in rows} == {"000": "done", "001": "failed", "deepmad": "done"}
    monkeypatch.setattr(study_mod, "run_trial", real)  # a rerun retries only the failed network
    assert all(r["status"] == "done" for r in run_study(samples, tmp_path / "study", recipe(epochs=1)).rows)


def test_rungs():
    assert rungs_of(8, 1, 2) == (1, 2, 4) and rungs_of(9, 1, 3) == (1, 3) and rungs_of(1, 1, 2) == ()
    with pytest.raises(ValueError, match="--grace/--eta"):
        rungs_of(4, 1, 1)


def test_tune_stops_the_worse_half_at_the_rung_and_picks_the_best_finisher(tmp_path, one_thread):
    designs = [{"name": f"rho{r}", "rho0": r, "alpha": [1.0, 1.0, 8.0], "text": t, "objective": 1.0, "rho": r,
                "entropy": 1.0, "macs": 1e6, "params": 1e4} for r, t in zip((0.1, 0.3, 0.5), NETS)]
    events = []
    result = tune_local(designs, tmp_path, recipe(epochs=2), grace=1, eta=2,
                        on_trial=lambda name, event: events.append((name, event["kind"])))
    status = {r["name"]: r["status"] for r in result.rows}
    assert sorted(status.values()) == ["done", "done", "stopped"]
    stopped = next(r for r in result.rows if r["status"] == "stopped")
    finishers = [r for r in result.rows if r["status"] == "done"]
    assert stopped["epochs"] == 1 and all(r["epochs"] == 2 for r in finishers)
    # The stopped trial was the worst at the rung; the winner is the best finisher.
    at_rung = {r["name"]: r["history"][0] for r in result.rows}
    assert at_rung[stopped["name"]] <= min(at_rung[r["name"]] for r in finishers)
    assert result.winner["top1"] == max(r["top1"] for r in finishers)
    assert json.loads((tmp_path / "tune.json").read_text())["winner"] == result.winner["name"]
    assert (tmp_path / "tune.png").is_file()
    # A rerun repeats the decisions from the stored metrics without training anything.
    again = tune_local(designs, tmp_path, recipe(epochs=2), grace=1, eta=2)
    assert [(r["name"], r["status"], r["top1"]) for r in again.rows] == \
           [(r["name"], r["status"], r["top1"]) for r in result.rows]
