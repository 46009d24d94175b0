"""`evaluate WEIGHTS --data DIR`: top-1/5 of trained weights with the eval transform of the recipe they were trained with."""

from __future__ import annotations

import argparse
import json

from .progress import print_evaluation


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 of trained weights (model.safetensors + config.json) on a dataset",
                       description="Evaluate a weights folder written by `train` (or any folder with model.safetensors "
                                   "and its config.json) on the validation split, with the evaluation transform of the "
                                   "recipe recorded in config.json (resize, centre crop, mean/std).")
    p.add_argument("weights", help="weights folder (model.safetensors + config.json), e.g. runs/train-r50-imagefolder "
                                   "or its best/ or ema/ subfolder")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="dataset folder: DIR/val (imagefolder) or the folder holding cifar-100-python/")
    p.add_argument("--dataset", default=None,
                   help="imagefolder, cifar100, fake or digits (default: the one the weights were trained on)")
    p.add_argument("--config", dest="train_config", metavar="PRESET|TOML", default=None,
                   help="recipe whose eval transform to use when config.json records none (default imagenet, with "
                        "the preprocessing config.json states)")
    p.add_argument("--set", dest="train_settings", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="change a recipe field, e.g. --set data.eval_crop=1.0 (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default the recipe's)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace, console) -> int:
    from ..model import load_model
    from ..train import apply_settings, build_data, evaluate_model, load_train_config, train_config_from_dict
    from ..weights import read_config

    config = read_config(args.weights)
    recorded = config["deepmad_evo"].get("train_config")
    if recorded is not None and args.train_config is None:
        cfg = train_config_from_dict(recorded, f"{args.weights}/config.json")
    else:
        pre = config.get("pretrained_cfg", {})
        cfg = load_train_config(args.train_config).with_overrides(
            mean=pre.get("mean"), std=pre.get("std"), eval_crop=pre.get("crop_pct"),
            interpolation=pre.get("interpolation"), image_size=(pre.get("input_size") or [None] * 3)[-1])
    cfg = apply_settings(cfg, args.train_settings).with_overrides(
        dataset=args.dataset, path=args.data, batch_size=args.batch_size, workers=args.workers, device=args.device)
    model = load_model(args.weights)
    if cfg.image_size == 0:
        cfg = cfg.with_overrides(image_size=model.genotype.image_size)
    data = build_data(cfg, eval_only=True)
    if data.num_classes != model.num_classes:
        raise ValueError(f"--data: {data.num_classes} classes, the weights classify {model.num_classes}; expected "
                         "the dataset they were trained on")
    result = evaluate_model(model, cfg, data)
    if args.json:
        print(json.dumps({"weights": str(args.weights), "data": data.description, **result}))
        return 0
    print_evaluation(console, result, args.weights, data.description)
    return 0
