"""`train GENOTYPE|--model NAME --data DIR`: train with the paper's recipe; `torchrun` runs it on several GPUs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..limits import arg_image_side, arg_seed
from .common import add_train_options, train_label
from .progress import train_genotype


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a genotype (or a registered model) with the paper's recipe",
                       description="Train a genotype with the DeepMAD recipe (configs/train/*.toml). Several GPUs: "
                                   "torchrun --nproc_per_node N run.py train ...")
    p.add_argument("genotype", nargs="?", default=None, metavar="GENOTYPE",
                   help="run directory, genotype JSON, text form, reference structure file or zoo name "
                        "(r50, mb-29m, deepmad-r50-published, …; see `presets`)")
    p.add_argument("--model", metavar="NAME", default=None, help="a zoo name (same as giving it as GENOTYPE)")
    p.add_argument("--out", default=None,
                   help="run folder (default runs/train-<name>-<genotype hash>-<dataset>: one per network and dataset)")
    p.add_argument("--seed", dest="train_seed", metavar="SEED", type=arg_seed, default=None, help="training seed (default from the config)")
    p.add_argument("--image-size", dest="train_image_size", metavar="PX", type=arg_image_side, default=None,
                   help="training image side (default: the config's, else the genotype's)")
    add_train_options(p, config_flag="--config")


def run(args: argparse.Namespace, console) -> int:
    if (args.genotype is None) == (args.model is None):
        raise ValueError("train: expected a GENOTYPE (run directory, file, text form or zoo name) or --model NAME, "
                         "exactly one of them")
    from ..models import list_models, resolve_genotype

    source = args.genotype if args.model is None else args.model
    if args.model is not None and args.model not in list_models():
        raise ValueError(f"--model: expected one of {', '.join(list_models())}, got {args.model!r}")
    genotype = resolve_genotype(source)
    out = Path(args.out) if args.out else None
    return train_genotype(genotype, args, console, out, name=train_label(source))
