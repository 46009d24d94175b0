"""`train GENOTYPE|--model NAME --data DIR`: train with the paper's recipe; `torchrun` runs it on several GPUs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_train_options
from .progress import train_genotype

def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a genotype (or a registered model) with the paper's recipe",
                       description="Train a genotype with the DeepMAD recipe (configs/train/*.toml). Several GPUs: "
                                   "torchrun --nproc_per_node N run.py train ...")
    p.add_argument("genotype", nargs="?", default=None,
                   help="genotype JSON, text-form or TinyNAS structure file, or the text form itself")
    p.add_argument("--model", metavar="NAME", default=None, help="a model registered in deepmad_evo.models instead of a genotype")
    p.add_argument("--out", default=None, help="run folder (default runs/train-<name>-<dataset>)")
    p.add_argument("--seed", dest="train_seed", metavar="SEED", type=int, default=None, help="training seed (default from the config)")
    p.add_argument("--image-size", dest="train_image_size", metavar="PX", type=int, default=None,
                   help="training image side (default: the config's, else the genotype's)")
    add_train_options(p, config_flag="--config")


def run(args: argparse.Namespace, console) -> int:
    if (args.genotype is None) == (args.model is None):
        raise ValueError("train: expected a GENOTYPE (file or text form) or --model NAME, exactly one of them")
    out = Path(args.out) if args.out else None
    if args.model is not None:
        from ..models import get_genotype

        return train_genotype(get_genotype(args.model), args, console, out, name=args.model)
    from ..genotype import load_genotype

    name = Path(args.genotype).stem if Path(args.genotype).is_file() else "genotype"
    return train_genotype(load_genotype(args.genotype), args, console, out, name=name)


