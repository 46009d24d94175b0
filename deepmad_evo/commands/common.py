"""What several commands share: the budget and config flags, config resolution, the training flags, run directories.

No command imports another; what two of them need lives here (options, resolution) or in
``commands/progress.py`` (library calls with live progress) and ``render.py`` (tables).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import replace
from pathlib import Path

from ..config import load_config, parse_quantity
from ..costs import CONVENTIONS
from ..genotype import BLOCKS
from ..latency.table import parse_time
from ..limits import arg_float, arg_image_side, arg_int, arg_seed


def add_search_options(p: argparse.ArgumentParser,
                       config_help: str = "preset name (r18, r50, mb-29m, …) or TOML path; default mb-29m") -> None:
    """The flags that pick a preset and override its budget, space and objective (`search`, `cross-check`)."""
    p.add_argument("--config", default=None, help=config_help)
    p.add_argument("--budget", default=None,
                   help="MAC budget (the paper's 'FLOPs'), e.g. 4.5G (K/M/G/T suffixes or a plain number); without "
                        "--params the preset's params budget scales with it by the preset's params/MACs ratio")
    p.add_argument("--params", default=None,
                   help="parameter budget, e.g. 29M, or 'off' for none (default: the preset's, scaled with --budget)")
    p.add_argument("--latency", default=None,
                   help="latency budget, e.g. 5ms, predicted from --latency-table; `search` then times the winner and "
                        "searches again until its measured latency is within the budget (see --no-build)")
    p.add_argument("--latency-table", default=None, metavar="TABLE",
                   help="latency table written by `run.py profile` on the target device")
    p.add_argument("--rho", type=arg_float, default=None, help="effectiveness bound ρ0 (default from the config)")
    p.add_argument("--block", choices=BLOCKS, default=None,
                   help="use this block family in every stage (switching ResNet <-> MobileNet families also switches "
                        "kernels, expansion range and ρ0 to that family's defaults; the run is labelled PRESET+BLOCK)")
    p.add_argument("--image-size", type=arg_image_side, default=None, help="input image side (default from the config)")
    p.add_argument("--seed", type=arg_seed, default=None, help="seed of the search (default from the config; same seed, "
                                                          "same result)")
    p.add_argument("--convention", choices=CONVENTIONS, default=None,
                   help="cost convention of the budgets: torch (what the nn.Module has) or tinynas (the paper's); "
                        "default from the config")


def resolve_config(args: argparse.Namespace):
    """The preset with the command-line overrides.

    ``--budget`` without ``--params`` scales the preset's params budget by its params/MACs ratio (the
    rule ``pareto`` applies to every point); ``--params off`` drops it. ``--block`` switching the
    preset's block family relabels the run ``PRESET+BLOCK``.
    """
    cfg = load_config(args.config)
    macs = None if args.budget is None else parse_quantity(args.budget, "--budget")
    params = None
    if args.params is not None and str(args.params).lower() != "off":
        params = parse_quantity(args.params, "--params")
    elif params_scaled(args, cfg):
        params = cfg.budget.params * macs / cfg.budget.macs
    out = cfg.with_overrides(macs=macs, params=params, rho=args.rho, block=args.block, image_size=args.image_size,
                             seed=args.seed, convention=args.convention,
                             latency=None if args.latency is None else parse_time(args.latency, "--latency"),
                             latency_table=args.latency_table)
    if args.params is not None and str(args.params).lower() == "off":
        out = replace(out, budget=replace(out.budget, params=None))
    if args.block is not None and set(cfg.template.blocks) != {args.block}:
        out = replace(out, name=f"{cfg.name}+{args.block}")
    return out


def params_scaled(args: argparse.Namespace, preset) -> bool:
    """Whether ``--budget`` came alone, so that the params budget is the preset's scaled with it."""
    return (args.budget is not None and args.params is None and preset.budget.params is not None
            and preset.budget.macs is not None)


def run_identity(cfg, cross_check: bool = False) -> dict:
    """Everything that changes a search's result: the resolved config (budgets, ρ0, template, space,
    objective, convention, seed, effort) and the stages run after the GA."""
    return {"config": cfg.to_dict(), "cross_check": bool(cross_check)}


def _config_digest(cfg) -> str:
    return hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


def search_run_dir(cfg, cross_check: bool = False) -> Path:
    """``runs/<config>-<budget>-s<seed>[-xc]-<hash of the run identity>``: the same command finds the same run,
    a different one never does."""
    macs = "nomacs" if cfg.budget.macs is None else f"{cfg.budget.macs / 1e9:g}G"
    digest = hashlib.sha1(json.dumps(run_identity(cfg, cross_check), sort_keys=True).encode()).hexdigest()[:8]
    return Path("runs") / f"{cfg.name}-{macs}-s{cfg.search.seed}{'-xc' if cross_check else ''}-{digest}"


def pareto_run_dir(cfg) -> Path:
    """``runs/pareto-<config>-s<seed>-<hash of the resolved config>``: the same command resumes the same run."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in cfg.name)
    return Path("runs") / f"pareto-{name}-s{cfg.search.seed}-{_config_digest(cfg)}"


# Which recipe a bare --dataset picks when no --config is given.
PRESET_OF_DATASET = {"imagefolder": "imagenet", "cifar100": "cifar100", "fake": "smoke", "digits": "digits"}


def add_train_options(p: argparse.ArgumentParser, config_flag: str = "--config", single_run: bool = True) -> None:
    """The training flags, shared by `train`, `search --train`, `study` and `tune` (the last three name the
    recipe --train-config; studies train many networks from scratch and always resume, so they go without
    --resume, --init and --evaluate-only)."""
    p.add_argument("--data", metavar="DIR", default=None,
                   help="dataset folder: DIR/train and DIR/val (imagefolder) or the folder holding cifar-100-python/")
    p.add_argument("--dataset", default=None,
                   help="imagefolder (default), cifar100, fake or digits (scikit-learn's; needs no --data)")
    p.add_argument(config_flag, dest="train_config", metavar="PRESET|TOML", default=None,
                   help="training preset (imagenet, cifar100, smoke, digits) or TOML path; default chosen by --dataset")
    p.add_argument("--epochs", type=arg_int(1, 10**6), default=None,
                   help="epochs (default from the recipe; a run shorter than the recipe's warm-up gets its warm-up "
                        "clamped to half the run, with a notice)")
    p.add_argument("--batch-size", type=arg_int(1, 2**20), default=None, help="global batch over all processes")
    p.add_argument("--lr", type=arg_float, default=None, help="learning rate per 256 images")
    p.add_argument("--warmup-epochs", type=arg_float, default=None,
                   help="epochs of linear learning-rate warm-up before the cosine decay (default from the recipe)")
    p.add_argument("--workers", type=arg_int(0, 1024), default=None, help="data-loading processes per GPU")
    p.add_argument("--ema-decay", type=arg_float, default=None, help="also evaluate an EMA of the weights (e.g. 0.9998)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--set", dest="train_settings", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="set any recipe field, e.g. --set augment.auto_augment=randaugment --set optim.optimizer=adamw "
                        "(TOML value; repeatable; applied before the flags above)")
    if single_run:
        p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
        p.add_argument("--init", metavar="WEIGHTS", default=None,
                       help="start from these weights (a folder with model.safetensors or a .safetensors file); a "
                            "classifier of another width is re-initialised")
        p.add_argument("--evaluate-only", action="store_true",
                       help="only evaluate (top-1/5 on the validation split) the --init weights or the --resume checkpoint")


def resolve_train_config(args: argparse.Namespace, notify=None):
    """The recipe named by the flags, with the command-line overrides applied.

    Args:
        notify: optional callable receiving one-line notices (e.g. a warm-up clamped to a short run).
    """
    from ..train import apply_settings, load_train_config

    preset = args.train_config or PRESET_OF_DATASET.get(args.dataset or "imagefolder", "imagenet")
    cfg = apply_settings(load_train_config(preset), getattr(args, "train_settings", None) or [])
    warmup = args.warmup_epochs
    if warmup is None and args.epochs is not None and cfg.warmup_epochs >= args.epochs and cfg.warmup_epochs > 0:
        # A smoke run (--epochs 1) of a recipe with 5 warm-up epochs: keep a decay phase instead of refusing.
        warmup = args.epochs / 2
        if notify is not None:
            notify(f"--epochs {args.epochs}: the recipe's {cfg.warmup_epochs:g} warm-up epochs clamped to {warmup:g} "
                   "(half the run) so that the learning rate still decays")
    overrides = dict(dataset=args.dataset, path=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     warmup_epochs=warmup, workers=args.workers, ema_decay=args.ema_decay,
                     device=args.device, compile=args.compile, seed=getattr(args, "train_seed", None),
                     image_size=getattr(args, "train_image_size", None))
    try:
        return cfg.with_overrides(**overrides)
    except ValueError as exc:
        # Name the flag the user typed rather than the TOML field it sets ("optim.epochs" -> "--epochs").
        head, _, rest = str(exc).partition(":")
        field = head.rsplit(".", 1)[-1]
        if overrides.get(field) is not None:
            raise ValueError(_FLAGS.get(field, "--" + field.replace("_", "-")) + ":" + rest) from None
        raise


_FLAGS = {"path": "--data", "seed": "--seed", "image_size": "--image-size"}


def train_label(source: str) -> str:
    """A short name for a GENOTYPE argument: the zoo name, the run directory's or the file's name, else "genotype"."""
    path = Path(source)
    if path.is_dir():
        return path.resolve().name
    if path.is_file():
        return path.resolve().parent.name if path.name == "genotype.json" else path.stem
    from ..models import list_models

    return source if source in list_models() else "genotype"


def train_run_dir(genotype, name: str | None, dataset: str) -> Path:
    """``runs/train-<name>-<8 hex of the genotype>-<dataset>``: two different networks never share a folder."""
    digest = hashlib.sha1(genotype.to_text().encode()).hexdigest()[:8]
    return Path("runs") / f"train-{name or 'genotype'}-{digest}-{dataset}"


# ------------------------------------------------------------------------- study and tune trials
def add_trial_options(p: argparse.ArgumentParser) -> None:
    """Training flags (recipe via --train-config) plus where and how the trials run."""
    add_train_options(p, config_flag="--train-config", single_run=False)
    p.add_argument("--seed", dest="train_seed", metavar="SEED", type=int, default=None,
                   help="training seed, the same for every network (default from the recipe)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one trial after another in this process (default); ray: Ray tasks, one per GPU "
                        "(or per --cpus-per-trial CPUs), on a local Ray instance or --ray-address")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join (e.g. auto, ray://host:10001); default: start a local instance")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and torch threads) per Ray trial (default 1)")
    p.add_argument("--retries", type=int, default=1, help="further attempts of a failing trial (default 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per local trial (default 1: small networks on shared CPUs)")


def check_trial_options(args: argparse.Namespace) -> None:
    for flag, value, low in (("--cpus-per-trial", args.cpus_per_trial, 1), ("--retries", args.retries, 0),
                             ("--threads", args.threads, 1)):
        if value < low:
            raise ValueError(f"{flag}: expected an integer >= {low}, got {value}")


def trial_recipe(args: argparse.Namespace, image_size: int):
    """The recipe every trial shares, with the genotypes' image size when the recipe leaves it open."""
    recipe = resolve_train_config(args)
    return recipe.with_overrides(image_size=image_size) if recipe.image_size == 0 else recipe
