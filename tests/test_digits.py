"""scikit-learn's digits as a real dataset: the split, the recipe, and search → train → evaluate on real images."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.torch

from deepmad_evo import train as T  # noqa: E402
from deepmad_evo.cli import main as cli_main  # noqa: E402
from deepmad_evo.genotype import Genotype, load_genotype  # noqa: E402
from deepmad_evo.model import build_model  # noqa: E402

SMALL = "i32_c3_n10 stem_k3_s2_c16 mbse_d1_k3_s2_b48_c24 mbse_d1_k3_s2_b96_c48 head_c96"


def test_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    train, val = T.digits_split(labels)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert (len(train), len(val)) == (1402, 395)
    per_class = np.bincount(labels[val], minlength=10) / np.bincount(labels, minlength=10)
    assert np.allclose(per_class, 0.22, atol=0.01)
    assert T.digits_split(labels) == (train, val)


def test_recipe_has_no_flips_and_light_augmentation():
    cfg = T.load_train_config("digits")
    assert cfg.dataset == "digits" and cfg.image_size == 32 and cfg.hflip == 0.0
    assert cfg.auto_augment == "none" and cfg.mixup == cfg.cutmix == cfg.random_erasing == 0.0
    data = T.build_data(cfg)
    assert data.num_classes == 10 and (len(data.train), len(data.val)) == (1402, 395)
    image, label = data.val[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10
    # Normalised with the digits' own statistics: roughly zero mean, unit spread over the validation set.
    stack = torch.stack([data.val[i][0] for i in range(0, 395, 5)])
    assert abs(stack.mean().item()) < 0.2 and 0.7 < stack.std().item() < 1.3


def evaluate_weights(model_file: Path, genotype: Genotype, recipe) -> float:
    """Top-1 of saved weights on the validation split, counted here (not by the trainer)."""
    model = build_model(genotype, 10)
    model.load_state_dict(torch.load(model_file, weights_only=True)["model"])
    model.eval()
    val = T.build_data(recipe).val
    hits = 0
    with torch.no_grad():
        for start in range(0, len(val), 128):
            batch = [val[i] for i in range(start, min(start + 128, len(val)))]
            images = torch.stack([b[0] for b in batch])
            labels = torch.tensor([b[1] for b in batch])
            hits += (model(images).argmax(1) == labels).sum().item()
    return 100.0 * hits / len(val)


def evaluate_command(weights: Path, capsys) -> dict:
    """`run.py evaluate WEIGHTS --json`: the user's way to score saved weights (recipe read from config.json)."""
    capsys.readouterr()
    assert cli_main(["evaluate", str(weights), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_small_network_learns_real_digits_in_two_epochs(tmp_path, one_thread, capsys):
    recipe = T.load_train_config("digits").with_overrides(epochs=2, warmup_epochs=0.0, batch_size=32)
    genotype = Genotype.from_text(SMALL)
    data = T.build_data(recipe)
    result = T.train(T.make_model(genotype, 10, recipe), recipe, data, tmp_path)
    top1 = evaluate_weights(tmp_path / "model.pt", genotype, recipe)
    assert top1 == pytest.approx(result.final["val_top1"], abs=1e-9)
    assert evaluate_command(tmp_path, capsys)["top1"] == pytest.approx(top1, abs=1e-9)
    assert top1 > 70.0, top1  # 82 % here; chance is 10 %, and shuffled labels or broken images stay near it


@pytest.mark.slow
def test_search_train_evaluate_on_digits(tmp_path, one_thread, capsys):
    out = tmp_path / "run"
    assert cli_main(["--config", "digits", "--out", str(out), "--no-build", "--train", "--dataset", "digits",
                     "--epochs", "8"]) == 0
    genotype = load_genotype(out / "genotype.json")
    recipe = T.load_train_config("digits")
    top1 = evaluate_weights(out / "train" / "model.pt", genotype, recipe)
    metrics = json.loads((out / "train" / "metrics.json").read_text())["epochs"]
    assert top1 == pytest.approx(metrics[-1]["val_top1"], abs=1e-9)
    assert evaluate_command(out / "train", capsys)["top1"] == pytest.approx(top1, abs=1e-9)
    assert top1 > 95.0, top1
