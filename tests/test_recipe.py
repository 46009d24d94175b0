"""Recipe options (torchvision/timm implementations), --set, portable weights from training, evaluate, --init."""

import json
import math

import pytest
import torch
from PIL import Image

from deepmad_evo import train as T
from deepmad_evo.cli import main as cli_main

# One intra-op thread: on tensors this small, more only contend on the shared 2-core machine.
pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_thread")]
TINY = "i16_c3_n4 stem_k3_s2_c8 basic_d1_k3_s2_b8_c16 mbse_d1_k3_s1_b32_c16"


def smoke(**changes):
    return T.load_train_config("smoke").with_overrides(**{"image_size": 16, "workers": 0, **changes})


# ------------------------------------------------------------------------------------------ --set
def test_set_reaches_any_field_with_toml_values():
    cfg = T.apply_settings(smoke(), ["augment.auto_augment=randaugment", "optim.lr=0.05", "data.mean=[0.5, 0.5, 0.5]",
                                     "optim.ema_warmup=true", "augment.magnitude=12", "optim.optimizer = adamw"])
    assert (cfg.auto_augment, cfg.lr, cfg.mean, cfg.ema_warmup, cfg.magnitude, cfg.optimizer) == \
        ("randaugment", 0.05, (0.5, 0.5, 0.5), True, 12, "adamw")


@pytest.mark.parametrize("setting, message", [
    ("optim.lr", "expected section.key=value"), ("lr=0.1", "expected section.key=value"),
    ("optimizer.lr=0.1", "unknown section 'optimizer'"), ("optim.learning_rate=0.1", "unknown key optim.learning_rate"),
    ("optim.lr=-1", "optim.lr: expected a number > 0"), ("augment.auto_augment=autoaug", "augment.auto_augment"),
    ("augment.magnitude=31", "augment.magnitude"), ("data.interpolation=lanczos", "data.interpolation"),
])
def test_bad_settings_name_the_field(setting, message):
    with pytest.raises(T.ConfigError, match=message):
        T.apply_settings(smoke(), [setting])


def test_cli_set_error_is_one_line(tmp_path, capsys):
    assert cli_main(["train", TINY, "--dataset", "fake", "--set", "optim.nope=1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key optim.nope" in err and len(err.splitlines()) == 1


# ----------------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("policy, cls", [("imagenet", "AutoAugment"), ("randaugment", "RandAugment"),
                                         ("trivialaugment", "TrivialAugmentWide"), ("augmix", "AugMix")])
def test_augment_policies_are_torchvisions(policy, cls):
    from torchvision.transforms import InterpolationMode, v2

    cfg = smoke(auto_augment=policy, interpolation="bicubic", magnitude=5, randaugment_ops=3, augmix_severity=2)
    aug = T.augment_policy(cfg)
    assert type(aug) is getattr(v2, cls)
    # AugMix works on tensors, where torchvision's affine ops have no bicubic: it falls back to bilinear.
    assert aug.interpolation == (InterpolationMode.BILINEAR if policy == "augmix" else InterpolationMode.BICUBIC)
    if policy == "randaugment":
        assert (aug.num_ops, aug.magnitude) == (3, 5)
    if policy == "augmix":
        assert aug.severity == 2
    tf = T.train_transform(cfg)
    assert tf.transforms[0].interpolation == InterpolationMode.BICUBIC  # RandomResizedCrop
    torch.manual_seed(0)
    assert tf(Image.new("RGB", (40, 30), (120, 30, 200))).shape == (3, 16, 16)
    assert T.eval_transform(cfg).transforms[0].interpolation == InterpolationMode.BICUBIC
    assert T.augment_policy(smoke(auto_augment="none")) is None


def test_repeated_augmentation_uses_timms_sampler():
    from timm.data.distributed_sampler import RepeatAugSampler

    cfg = smoke(repeated_aug=3, fake_images=12, batch_size=4)
    data = T.build_data(cfg)
    train, sampler, _ = T.build_loaders(data, cfg, T.Runtime(torch.device("cpu")), torch.Generator())
    assert isinstance(sampler, RepeatAugSampler)
    order = list(iter(sampler))
    # Every image the epoch draws comes in runs of 3 (the repeats), on one process.
    assert len(order) == 12 and all(order[i] == order[i + 1] == order[i + 2] for i in range(0, 12, 3))


# ------------------------------------------------------------------------------ optimizer and EMA
def test_adamw_and_torch_schedule():
    cfg = smoke(optimizer="adamw", lr=0.004, min_lr=0.0004, momentum=0.8, batch_size=64, epochs=3, warmup_epochs=1,
                weight_decay=0.05)
    optimizer, scheduler = T.build_optimizer(torch.nn.Linear(3, 2), cfg, 4)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak, floor = 0.004 * 64 / 256, 0.0004 * 64 / 256
    expected = [peak * (i + 1) / 4 for i in range(4)] + \
        [floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (i - 4) / 8)) for i in range(4, 12)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    _, no_warmup = T.build_optimizer(torch.nn.Linear(3, 2), cfg.with_overrides(warmup_epochs=0.0), 4)
    assert isinstance(no_warmup, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_ema_warmup_is_timms_and_checkpointable():
    from deepmad_evo.train.trainer import _ema

    model = torch.nn.Linear(2, 1)
    ema = _ema(model, smoke(ema_decay=0.999, ema_warmup=True))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # step 1: decay 0, the average is the model
    assert torch.equal(ema.module.weight, model.weight)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update_parameters(model)  # step 2: decay 1 - 2^(-2/3) (timm's warm-up), far below 0.999
    d = 1 - 2 ** (-2 / 3)
    assert ema.module.weight.flatten().tolist() == pytest.approx([d * 1.0 + (1 - d) * 3.0] * 2)
    again = _ema(torch.nn.Linear(2, 1), smoke(ema_decay=0.999, ema_warmup=True))
    again.load_state_dict(ema.state_dict())
    assert int(again.n_averaged) == 2 and torch.equal(again.module.weight, ema.module.weight)
    plain = _ema(model, smoke(ema_decay=0.9))
    assert isinstance(plain, torch.optim.swa_utils.AveragedModel)


# -------------------------------------------------------------------- weights, evaluate, --init
def test_train_writes_weights_that_evaluate_and_init_read(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--dataset", "fake", "--batch-size", "8", "--warmup-epochs", "0", "--workers", "0",
              "--set", "data.fake_images=16", "--set", "data.fake_val_images=16", "--set", "data.fake_classes=4"]
    assert cli_main(["train", TINY, "--epochs", "2", "--ema-decay", "0.5", "--set", "augment.auto_augment=augmix",
                     *common, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors + config.json" in out and "best val top-1" in out
    history = json.loads((run / "metrics.json").read_text())["epochs"]
    for folder in (run, run / "ema", run / "best"):
        assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["pretrained_cfg"]["crop_pct"] == 1.0 and config["num_classes"] == 4
    assert config["deepmad_evo"]["train_config"]["augment"]["auto_augment"] == "augmix"
    best = max(history, key=lambda r: r["val_top1"])
    assert json.loads((run / "best" / "config.json").read_text())["deepmad_evo"]["epoch"] == best["epoch"]

    # evaluate: the recorded recipe's eval transform on the same validation images gives the logged numbers.
    for folder, prefix in ((run, "val_"), (run / "ema", "ema_val_")):
        assert cli_main(["evaluate", str(folder), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["images"] == 16
        assert result["top1"] == history[-1][prefix + "top1"] and result["top5"] == history[-1][prefix + "top5"]
        assert result["loss"] == pytest.approx(history[-1][prefix + "loss"], rel=1e-6)

    # --evaluate-only --init: the same numbers through the train command.
    assert cli_main(["train", TINY, *common, "--init", str(run), "--evaluate-only", "--out", str(tmp_path / "e")]) == 0
    table = capsys.readouterr().out
    assert f"{history[-1]['val_top1']:.2f}%" in table and "evaluated" in table

    # --init fine-tunes on another class count: the classifier starts fresh, everything else from the weights.
    common6 = [c.replace("fake_classes=4", "fake_classes=6") for c in common]
    assert cli_main(["train", TINY, "--epochs", "1", *common6, "--init", str(run), "--out", str(tmp_path / "ft")]) == 0
    assert "re-initialised: classifier.weight, classifier.bias" in " ".join(capsys.readouterr().out.split())
    assert json.loads((tmp_path / "ft" / "train_config.json").read_text())["init"].endswith("model.safetensors")

    assert cli_main(["evaluate", str(run), "--set", "data.fake_classes=6"]) == 2
    assert "the weights classify 4" in capsys.readouterr().err
    assert cli_main(["evaluate", str(tmp_path / "missing")]) == 2
    assert cli_main(["train", TINY, *common, "--evaluate-only", "--out", str(tmp_path / "x")]) == 2
    assert "expected --init WEIGHTS or --resume" in capsys.readouterr().err


def test_evaluate_weights_without_a_recipe_on_an_imagefolder_val_split(tmp_path, capsys):
    import numpy as np

    from deepmad_evo import build_model
    from deepmad_evo.genotype import load_genotype
    from deepmad_evo.weights import save_weights

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "data" / "val" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "data" / "val" / cls / f"{i}.png")
    torch.manual_seed(0)
    model = build_model(load_genotype(TINY), num_classes=2).eval()
    save_weights(model, tmp_path / "w", preprocessing={"crop_pct": 1.0, "interpolation": "bicubic"})
    # No train/ folder is needed to evaluate; the eval transform comes from config.json's pretrained_cfg.
    assert cli_main(["evaluate", str(tmp_path / "w"), "--data", str(tmp_path / "data"), "--dataset", "imagefolder",
                     "--workers", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    cfg = T.load_train_config("imagenet").with_overrides(image_size=16, eval_crop=1.0, interpolation="bicubic")
    tf = T.eval_transform(cfg)
    images = [(tf(Image.open(p).convert("RGB")), i) for i, cls in enumerate(("cat", "dog"))
              for p in sorted((tmp_path / "data" / "val" / cls).glob("*.png"))]
    with torch.no_grad():
        logits = model(torch.stack([x for x, _ in images]))
    labels = torch.tensor([y for _, y in images])
    assert result["images"] == 6
    assert result["top1"] == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
