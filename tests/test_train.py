"""Training on CPU: recipe config, schedule, learning a generated dataset, exact resume, DDP (gloo) = 1 process, CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from deepmad_evo import Genotype  # noqa: E402
from deepmad_evo import train as T  # noqa: E402
from deepmad_evo.cli import main as cli_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = str(REPO / "run.py")
# tiny.toml-like: mbconv_se stages and a head, small enough for CPU steps in tens of milliseconds.
TINY = "i32_c3_n10 stem_k3_s2_c16 mbse_d1_k3_s2_b48_c24 mbse_d1_k3_s2_b96_c48 head_c96"
PLAIN = dict(crop="center", hflip=0.0, auto_augment="none", random_erasing=0.0, mixup=0.0, cutmix=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    # The CI box has 2 shared cores: on tensors this small, intra-op threads only contend (30x slower
    # under load). Resume equivalence holds for any fixed thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smoke(**changes) -> T.TrainConfig:
    return T.load_train_config("smoke").with_overrides(**{"image_size": 32, "workers": 0, **changes})


# ------------------------------------------------------------------------------------------ config
def test_presets_load_with_the_papers_recipe():
    imagenet, cifar = T.load_train_config("imagenet"), T.load_train_config("cifar100")
    for cfg in (imagenet, cifar):
        assert (cfg.momentum, cfg.lr, cfg.warmup_epochs, cfg.label_smoothing) == (0.9, 0.1, 5.0, 0.1)
        assert cfg.mixup > 0 and cfg.cutmix > 0 and cfg.random_erasing > 0 and cfg.auto_augment != "none"
    assert imagenet.weight_decay == 4e-5 and imagenet.crop == "resized" and imagenet.dataset == "imagefolder"
    assert cifar.weight_decay == 5e-4 and cifar.image_size == 32 and cifar.dataset == "cifar100"
    assert T.load_train_config("smoke").dataset == "fake"
    assert T.load_train_config() == imagenet


@pytest.mark.parametrize("text, message", [
    ("[optim]\nlearning_rate = 0.1\n", "unknown key optim.learning_rate; expected one of"),
    ("[optimiser]\nlr = 0.1\n", "unknown table [optimiser]"),
    ("[optim]\nepochs = 0\n", "optim.epochs: expected an integer >= 1, got 0"),
    ("[augment]\ncrop = \"random\"\n", "augment.crop: expected one of resized, padded, center, got 'random'"),
    ("[optim]\nepochs = 3\nwarmup_epochs = 5\n", "optim.warmup_epochs: 5 leaves no decay phase"),
    ("[data]\nmean = [0.5, 0.5]\n", "data.mean: expected a list of 3 numbers"),
    ("[optim\n", "not valid TOML"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(T.ConfigError) as err:
        T.load_train_config(path)
    assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(T.ConfigError, match="is neither a file nor a training preset; presets: cifar100"):
        T.load_train_config("nope")


def test_overrides_are_validated():
    cfg = T.load_train_config("smoke")
    assert cfg.with_overrides(epochs=7, lr=None).epochs == 7
    with pytest.raises(T.ConfigError, match="optim.batch_size: expected an integer >= 1, got -4"):
        cfg.with_overrides(batch_size=-4)


# ------------------------------------------------------------------------------- optimizer, schedule
def test_schedule_is_linear_warmup_then_per_step_cosine():
    cfg = smoke(lr=0.4, min_lr=0.04, batch_size=64, epochs=4, warmup_epochs=1)
    model = torch.nn.Linear(2, 2)
    steps_per_epoch = 10
    optimizer, scheduler = T.build_optimizer(model, cfg, steps_per_epoch)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = 0.4 * 64 / 256  # linear scaling rule
    assert lrs[0] == pytest.approx(peak / 10) and lrs[9] == pytest.approx(peak)
    # Cosine over the 30 remaining steps from peak to min_lr (scaled): halfway is the mean of the two.
    floor = 0.04 * 64 / 256
    assert lrs[10] == pytest.approx(peak)
    assert lrs[25] == pytest.approx((peak + floor) / 2)
    assert lrs[39] == pytest.approx(floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_no_weight_decay_on_norm_and_bias():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    decay, no_decay = T.parameter_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                                                   id(model[3].bias)}


# ---------------------------------------------------------------------------------------- learning
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (220, 200, 40), (200, 40, 200)]


def write_patterns(root: Path, per_class_train: int = 24, per_class_val: int = 8, seed: int = 0) -> None:
    """10 classes of 32x32 PNGs: 5 stripe colours x 2 orientations, random period/phase/brightness, noise.

    Colour alone separates only 5 groups (50 % at best), so high accuracy needs the orientation too.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                period = rng.integers(4, 7)
                stripes = ((np.arange(32) + rng.integers(0, period)) % period) < period // 2
                mask = np.broadcast_to(stripes[None, :] if c >= 5 else stripes[:, None], (32, 32))
                image = rng.normal(90, 30, (32, 32, 3))
                image[mask] = np.array(COLOURS[c % 5]) * rng.uniform(0.7, 1.1)
                image += rng.normal(0, 20, image.shape)
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def test_tiny_decoded_network_learns_generated_patterns(tmp_path):
    write_patterns(tmp_path / "data")
    cfg = smoke(dataset="imagefolder", path=str(tmp_path / "data"), batch_size=32, lr=0.8, epochs=4,
                warmup_epochs=1, label_smoothing=0.0, weight_decay=5e-4, **PLAIN)
    data = T.build_data(cfg)
    assert data.num_classes == 10 and len(data.train) == 240 and len(data.val) == 80
    events = []
    result = T.train(T.make_model(Genotype.from_text(TINY), data.num_classes, cfg), cfg, data, tmp_path / "run",
                     callback=events.append)
    assert result.epochs_run == 4 and len(result.history) == 4
    first, last = result.history[0], result.history[-1]
    assert last["step"] == 4 * 7  # 240 images / 32 = 7 full batches per epoch: 28 steps in all
    assert last["val_top1"] >= 70.0  # chance is 10 %, colour alone 50 %
    assert last["train_loss"] < 0.5 * first["train_loss"] and last["val_top5"] >= last["val_top1"]
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 4 and "step" in kinds
    # Files: metrics as CSV and JSON, the curves plot, final weights, the checkpoint.
    out = tmp_path / "run"
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(T.METRIC_COLUMNS)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == result.history
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = torch.load(out / "model.pt", weights_only=True)
    assert weights["num_classes"] == 10 and weights["ema"] is None and weights["extra"] == {}
    T.make_model(Genotype.from_text(TINY), 10, cfg).load_state_dict(weights["model"])  # strict: every key fits
    assert T.load_checkpoint(out / "checkpoint.pt")["epoch"] == 4


# ------------------------------------------------------------------------------------------ resume
class Interrupt(Exception):
    pass


def test_resume_continues_bit_for_bit(tmp_path):
    # Everything random switched on: augmentation, mixup/cutmix, dropout, drop-path, EMA, loader workers.
    cfg = smoke(fake_images=64, fake_val_images=16, fake_classes=10, batch_size=16, epochs=2, warmup_epochs=1,
                ema_decay=0.9, drop_rate=0.2, drop_path_rate=0.1, workers=1)
    data = T.build_data(cfg)
    genotype = Genotype.from_text(TINY)
    straight = T.train(T.make_model(genotype, 10, cfg), cfg, data, tmp_path / "a")

    def stop_after_first_epoch(event):
        if event.kind == "epoch":
            raise Interrupt

    with pytest.raises(Interrupt):
        T.train(T.make_model(genotype, 10, cfg), cfg, data, tmp_path / "b", callback=stop_after_first_epoch)
    assert T.load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = T.train(T.make_model(genotype, 10, cfg), cfg, data, tmp_path / "b", resume=True)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 1
    a, b = (T.load_checkpoint(tmp_path / d / "checkpoint.pt") for d in "ab")
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    strip = [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_seconds")}
             for row in straight.history]
    assert strip == [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_seconds")}
                     for row in resumed.history]
    # Resuming a finished run trains nothing and keeps the result.
    again = T.train(T.make_model(genotype, 10, cfg), cfg, data, tmp_path / "b", resume=True)
    assert again.epochs_run == 0 and again.history == resumed.history


def test_bad_checkpoints_give_one_clear_error(tmp_path):
    cfg = smoke(fake_images=32, fake_val_images=8, fake_classes=10, batch_size=16, epochs=2, warmup_epochs=1, **PLAIN)
    data = T.build_data(cfg)
    genotype = Genotype.from_text(TINY)
    out = tmp_path / "run"

    def build(g=genotype):
        return T.make_model(g, 10, cfg)

    with pytest.raises(ValueError, match="--resume: no checkpoint at"):
        T.train(build(), cfg, data, out, resume=True)
    T.train(build(), cfg, data, out)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass --resume"):
        T.train(build(), cfg, data, out)
    with pytest.raises(ValueError, match=r"was trained with lr = 0.1, this run asks for 0.2"):
        T.train(build(), cfg.with_overrides(lr=0.2), data, out, resume=True)
    wider = Genotype.from_text(TINY.replace("head_c96", "head_c128"))
    with pytest.raises(ValueError, match="holds a different network"):
        T.train(build(wider), cfg, data, out, resume=True)
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])  # a write cut short
    with pytest.raises(ValueError, match="is corrupt or truncated") as err:
        T.train(build(), cfg, data, out, resume=True)
    assert "\n" not in str(err.value)
    torch.save({"weights": 1}, checkpoint)
    with pytest.raises(ValueError, match="is not a deepmad-evo/checkpoint/1 file"):
        T.train(build(), cfg, data, out, resume=True)


# --------------------------------------------------------------------------------------------- DDP
@pytest.mark.slow  # two torchrun processes plus a reference run: the longest test of the suite
def test_ddp_gloo_two_processes_equal_one_process(tmp_path):
    """torchrun x2 (gloo) through the CLI == 1 process with 2 interleaved accumulation steps, same global batch.

    Each DDP rank normalises its half batch with its own BatchNorm statistics; the 1-process run with two
    micro-batches does the same, so losses and weights agree to float rounding, not just statistically.
    """
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        "[data]\ndataset = \"fake\"\nimage_size = 32\neval_crop = 1.0\nfake_images = 96\nfake_val_images = 16\n"
        "fake_classes = 10\nworkers = 0\n[augment]\ncrop = \"center\"\nhflip = 0.0\nauto_augment = \"none\"\n"
        "random_erasing = 0.0\nmixup = 0.0\ncutmix = 0.0\n[optim]\nepochs = 2\nbatch_size = 16\nwarmup_epochs = 1\n"
        "accum_steps = 1\n[run]\nlog_every = 3\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", RUN,
                          "train", TINY, "--config", recipe, "--out", tmp_path / "ddp"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("parameters on cpu × 2") == 1  # only rank 0 reports
    single = tmp_path / "recipe1.toml"
    single.write_text(recipe.read_text().replace("accum_steps = 1", "accum_steps = 2"))
    assert cli_main(["train", TINY, "--config", str(single), "--out", str(tmp_path / "one")]) == 0
    a, b = (T.load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("ddp", "one"))
    assert a["world_size"] == 2 and b["world_size"] == 1
    assert a["history"][-1]["step"] == b["history"][-1]["step"] == 2 * 6
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
    initial = dict(T.make_model(Genotype.from_text(TINY), 10, T.TrainConfig()).named_parameters())
    for name in initial:  # BN running statistics legitimately differ (rank 0's vs both micro-batches)
        assert torch.allclose(a["model"][name], b["model"][name], rtol=1e-4, atol=1e-6), name
    # The weights did move: the comparison is not between two untouched initialisations.
    assert sum(not torch.allclose(initial[n], a["model"][n]) for n in initial) > len(initial) // 2

# --------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/nowhere"], "--data: '{tmp}/nowhere' is not a directory; expected DIR/train/<class>/<image>"),
    (["--data", "{tmp}"], "--data: '{tmp}' has no train/ folder; expected DIR/train/<class>/<image>"),
    (["--data", "{tmp}", "--dataset", "cifar100"], "--data: no CIFAR-100 under '{tmp}'; expected "
                                                   "DIR/cifar-100-python/{{train,test,meta}}"),
    ([], "--data: required for dataset 'imagefolder'"),
    (["--dataset", "mnist"], "--dataset: expected one of imagefolder, cifar100, fake, digits, got 'mnist'"),
    (["--dataset", "fake", "--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    (["--model", "x"], "train: expected a GENOTYPE (run directory, file, text form or zoo name) or --model NAME, "
                       "exactly one of them"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    status = cli_main(["train", TINY, *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and message.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_cli_smoke_run_then_resume(tmp_path, capsys):
    args = ["train", TINY, "--dataset", "fake", "--epochs", "2", "--batch-size", "16", "--warmup-epochs", "0",
            "--out", str(tmp_path / "run")]
    recipe = tmp_path / "small.toml"
    recipe.write_text(T.CONFIG_DIR.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 32")
                      .replace("fake_val_images = 64", "fake_val_images = 8"))
    assert cli_main(args + ["--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "top-1" in out and "trained" in out
    run = tmp_path / "run"
    assert Genotype.from_json((run / "genotype.json").read_text()) == Genotype.from_text(TINY)
    assert json.loads((run / "train_config.json").read_text())["genotype"] == TINY
    assert cli_main(args + ["--config", str(recipe)]) == 2  # an existing run is never overwritten
    assert "pass --resume" in capsys.readouterr().err
    assert cli_main(args + ["--config", str(recipe), "--resume"]) == 0
    assert "all 2 epochs were already trained" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_amp_channels_last_compile(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cfg = T.load_train_config("smoke").with_overrides(image_size=32, fake_images=512, fake_val_images=128,
                                                      fake_classes=100, batch_size=64, epochs=2, compile=True,
                                                      ema_decay=0.99)
    data = T.build_data(cfg)
    events = []
    model = T.make_model(Genotype.from_text(TINY), 100, cfg)
    result = T.train(model, cfg, data, tmp_path / "gpu", callback=events.append)
    info = events[0].info
    assert info["device"].startswith("cuda") and info["amp"] in ("torch.bfloat16", "torch.float16")
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) for row in result.history)
    conv = next(p for p in model.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
    assert T.load_checkpoint(tmp_path / "gpu" / "checkpoint.pt")["epoch"] == 2


def test_search_then_train(tmp_path, capsys):
    recipe = tmp_path / "small.toml"
    recipe.write_text(T.CONFIG_DIR.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 32")
                      .replace("fake_val_images = 64", "fake_val_images = 8").replace("epochs = 2", "epochs = 1")
                      .replace("warmup_epochs = 1", "warmup_epochs = 0"))
    assert cli_main(["--config", "tiny", "--train", "--epochs", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--epochs: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # the bad training flag stopped it before the search
    out = tmp_path / "run"
    assert cli_main(["--config", "tiny", "--train", "--dataset", "fake", "--batch-size", "16",
                     "--train-config", str(recipe), "--out", str(out)]) == 0
    searched = Genotype.from_json((out / "genotype.json").read_text())
    assert Genotype.from_json((out / "train" / "genotype.json").read_text()) == searched
    row = json.loads((out / "train" / "metrics.json").read_text())["epochs"][-1]
    assert row["epoch"] == 1 and row["step"] == 2 and math.isfinite(row["train_loss"])
    assert T.load_checkpoint(out / "train" / "checkpoint.pt")["extra"] == {"genotype": searched.to_text()}


def test_cli_trains_a_registered_model(tmp_path, capsys):
    from deepmad_evo.models import get_genotype

    assert cli_main(["train", "--model", "no-such-net", "--dataset", "fake"]) == 2
    assert "model: expected one of" in capsys.readouterr().err
    recipe = tmp_path / "small.toml"
    recipe.write_text(T.CONFIG_DIR.joinpath("smoke.toml").read_text().replace("fake_images = 256", "fake_images = 16")
                      .replace("fake_val_images = 64", "fake_val_images = 8").replace("epochs = 2", "epochs = 1")
                      .replace("warmup_epochs = 1", "warmup_epochs = 0"))
    out = tmp_path / "run"
    assert cli_main(["train", "--model", "tiny", "--config", str(recipe), "--batch-size", "8", "--image-size", "32",
                     "--out", str(out)]) == 0
    assert Genotype.from_json((out / "genotype.json").read_text()) == get_genotype("tiny")
    assert json.loads((out / "train_config.json").read_text())["config"]["data"]["image_size"] == 32
