"""`train GENOTYPE|--model NAME --data DIR`: train with the paper's recipe; `torchrun` runs it on several GPUs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Which recipe a bare --dataset picks when no --config is given.
PRESET_OF_DATASET = {"imagefolder": "imagenet", "cifar100": "cifar100", "fake": "smoke", "digits": "digits"}


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


def add_train_options(p: argparse.ArgumentParser, config_flag: str = "--config", resume: bool = True) -> None:
    """The training flags, shared by `train`, `search --train`, `study` and `tune` (the last three name the
    recipe --train-config; studies always resume, so they go without --resume)."""
    p.add_argument("--data", metavar="DIR", default=None,
                   help="dataset folder: DIR/train and DIR/val (imagefolder) or the folder holding cifar-100-python/")
    p.add_argument("--dataset", default=None, help="imagefolder (default), cifar100, fake or digits (scikit-learn's, no --data needed)")
    p.add_argument(config_flag, dest="train_config", metavar="PRESET|TOML", default=None,
                   help="training preset (imagenet, cifar100, smoke) or TOML path; default chosen by --dataset")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch over all processes")
    p.add_argument("--lr", type=float, default=None, help="learning rate per 256 images")
    p.add_argument("--warmup-epochs", type=float, default=None)
    p.add_argument("--workers", type=int, default=None, help="data-loading processes per GPU")
    p.add_argument("--ema-decay", type=float, default=None, help="also evaluate an EMA of the weights (e.g. 0.9998)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")


def resolve_train_config(args: argparse.Namespace):
    """The recipe named by the flags, with the command-line overrides applied."""
    from ..train import load_train_config

    preset = args.train_config or PRESET_OF_DATASET.get(args.dataset or "imagefolder", "imagenet")
    cfg = load_train_config(preset)
    overrides = dict(dataset=args.dataset, path=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     warmup_epochs=args.warmup_epochs, workers=args.workers, ema_decay=args.ema_decay,
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


def train_genotype(genotype, args: argparse.Namespace, console, out: Path | None = None, name: str | None = None) -> int:
    """Train a genotype as the flags in ``args`` say, rendering progress; used by `train` and `search --train`.

    Args:
        genotype: the network to decode and train.
        args: parsed flags of ``add_train_options`` (plus the optional train_seed, train_image_size).
        console: rich console; silenced on every torchrun process but the first.
        out: run folder; default ``runs/train-<name>-<dataset>``.
        name: names the default run folder (default "genotype").

    Returns:
        The exit status (0).
    """
    from ..genotype import save_genotype
    from ..train import CHECKPOINT, build_data, make_model, train

    cfg = resolve_train_config(args)
    if cfg.image_size == 0:
        cfg = cfg.with_overrides(image_size=genotype.image_size)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if not main_process:
        console.quiet = True  # torchrun: only the first process reports
    out = out or Path("runs") / f"train-{name or 'genotype'}-{cfg.dataset}"
    resume = bool(getattr(args, "resume", False))

    data = build_data(cfg)
    model = make_model(genotype, data.num_classes, cfg)
    if main_process and (resume or not (out / CHECKPOINT).exists()):
        save_genotype(genotype, out / "genotype.json")
    console.print(f"[bold]train[/] {genotype.to_text()}")
    console.print(f"data: {data.description}; image {cfg.image_size}px; recipe: "
                  f"{args.train_config or PRESET_OF_DATASET.get(cfg.dataset)} → {out}")
    with _ProgressView(console) as view:
        result = train(model, cfg, data, out, resume=resume, callback=view.update,
                       extra={"genotype": genotype.to_text()})
    _summary(console, result)
    return 0


class _ProgressView:
    """Rich rendering of TrainEvents: a bar per epoch, one line of metrics after each."""

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
                                 TextColumn("{task.fields[speed]} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.task, self.description = None, None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, event) -> None:
        if event.kind == "start":
            info = event.info
            self.console.print(
                f"{info['parameters']:,} parameters on {info['device']} × {info['world_size']} "
                f"(AMP {info['amp']}), peak lr {info['peak_lr']:.4g}, {event.steps_per_epoch} steps/epoch"
                + (f"; resumed after epoch {info['start_epoch']}" if info["resumed"] else ""))
            if event.epoch >= event.epochs:
                self.console.print(f"[dim]all {event.epochs} epochs were already trained[/]")
        elif event.kind == "step":
            description = f"epoch {event.epoch + 1}/{event.epochs}"
            done = event.step - event.epoch * event.steps_per_epoch
            if description != self.description:  # a new epoch: a fresh bar
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task(description, total=event.steps_per_epoch, loss="-", lr="-",
                                                   speed="-")
                self.description = description
            self.progress.update(self.task, completed=done, loss=f"{event.loss:.4f}", lr=f"{event.lr:.4g}",
                                 speed=f"{event.images_per_s:,.0f}")
        elif event.kind == "epoch":
            m = event.metrics
            text = f"epoch {m['epoch']}/{event.epochs}  train loss {m['train_loss']:.4f}"
            if m.get("val_top1") is not None:
                text += f"  val loss {m['val_loss']:.4f}  top-1 {m['val_top1']:.2f}%  top-5 {m['val_top5']:.2f}%"
            if m.get("ema_val_top1") is not None:
                text += f"  EMA top-1 {m['ema_val_top1']:.2f}%"
            self.console.print(text + f"  {m['images_per_s']:,.0f} img/s  {m['epoch_seconds']:.1f} s")


def _summary(console, result) -> None:
    from rich.table import Table

    final = result.final
    table = Table(title="trained", title_justify="left", header_style="bold")
    for column in ("epochs", "val top-1", "val top-5", "val loss", "EMA top-1", "img/s"):
        table.add_column(column)

    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    table.add_row(str(final.get("epoch", 0)), pct(final.get("val_top1")), pct(final.get("val_top5")),
                  "-" if final.get("val_loss") is None else f"{final['val_loss']:.4f}", pct(final.get("ema_val_top1")),
                  "-" if final.get("images_per_s") is None else f"{final['images_per_s']:,.0f}")
    console.print(table)
    console.print(f"metrics.csv, metrics.json, curves.png, checkpoint.pt and model.pt in [bold]{result.out_dir}[/]")
