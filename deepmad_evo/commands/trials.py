"""What `study` and `tune` share: executor flags, the proxy recipe, and a compact rich view of many trainings."""

from __future__ import annotations

import argparse

from .train import add_train_options


def add_trial_options(p: argparse.ArgumentParser) -> None:
    """Training flags (recipe via --train-config) plus where and how the trials run."""
    add_train_options(p, config_flag="--train-config", resume=False)
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
    from .train import resolve_train_config

    recipe = resolve_train_config(args)
    return recipe.with_overrides(image_size=image_size) if recipe.image_size == 0 else recipe


class TrialsView:
    """A bar over all trials and one over the current trial's epochs; one line per finished trial."""

    def __init__(self, console, total: int, title: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.total_task = self.progress.add_task(title, total=total, info="")
        self.trial_task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, line: str | None = None) -> None:
        self.progress.advance(self.total_task)
        if line:
            self.progress.console.print(line)

    def callback_for(self, spec: dict):
        """The TrainEvent callback of one trial (local executor)."""

        def update(event):
            if event.kind == "start":
                if self.trial_task is not None:
                    self.progress.remove_task(self.trial_task)
                self.trial_task = self.progress.add_task(f"{spec['name']}", total=event.epochs * event.steps_per_epoch,
                                                         completed=event.step, info="")
            elif event.kind in ("step", "epoch") and self.trial_task is not None:
                info = f"epoch {min(event.epoch + (event.kind == 'step'), event.epochs)}/{event.epochs}"
                if event.kind == "epoch" and event.metrics and event.metrics.get("val_top1") is not None:
                    info += f"  top-1 {event.metrics['val_top1']:.2f}%"
                elif event.loss is not None:
                    info += f"  loss {event.loss:.3f}"
                self.progress.update(self.trial_task, completed=event.step, info=info)

        return update
