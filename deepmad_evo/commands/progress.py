"""Library calls that run for a while, with live rich feedback: search, cross-check, build check, training, study trials."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.markup import escape

from ..costs import check_memory, network_costs
from ..io import clean_stale_temps
from ..limits import check_output
from ..search import polish_events, run_search
from ..units import expand
from .common import PRESET_OF_DATASET, resolve_train_config, train_run_dir


def search_with_progress(cfg, console):
    """Run the configured search with a rich progress bar; returns the SearchResult."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = cfg.search_settings()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("best {task.fields[best]}"), TextColumn("feasible {task.fields[feas]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        n = settings.chains
        ga = progress.add_task(f"GA ×{n} chains", total=n * settings.restarts * settings.generations, best="-", feas="-")
        polish = progress.add_task("polish", total=polish_events(settings),
                                   best="-", feas="-", visible=settings.local_search)
        best = {}

        def callback(info):
            # Chains report interleaved from several processes: advance by one step per event.
            best[info["phase"]] = max(best.get(info["phase"], float("-inf")), info["best_objective"])
            progress.update(ga if info["phase"] == "ga" else polish, advance=1,
                            best=f"{best[info['phase']]:.2f}", feas=f"{100 * info['feasible_fraction']:.0f}%")

        result = run_search(cfg.search_space(), cfg.budget, alpha=cfg.objective.alpha, beta=cfg.objective.beta,
                            convention=cfg.objective.convention, settings=settings, seed=cfg.search.seed,
                            callback=callback)
    return result


def cross_check_with_progress(source, cfg, console, *, random_starts: int | None = None, kernels: str = "fixed",
                              depth_nodes: int = 0, tolerance: float | None = None,
                              bound_gap: float | None = None):
    """Run ``relax.cross_check`` for a SearchResult or genotype under ``cfg`` with a live status line.

    ``random_starts`` and ``tolerance`` default to the config's ``[crosscheck]`` table, as do the
    SLSQP iterations and the polish effort; ``bound_gap`` to ``relax.BOUND_GAP``.
    """
    c = cfg.crosscheck
    from ..relax import BOUND_GAP, cross_check

    o = cfg.objective
    with console.status("cross-check: SLSQP on the continuous relaxation…") as status:
        def callback(info):
            what = info["origin"] if info["phase"] == "depth-bound" else f"SLSQP run {info['done']} ({info['origin']})"
            status.update(f"cross-check: {what} → {info['objective']:.2f}"
                          + ("" if info["feasible"] else " [red]infeasible[/]"))

        return cross_check(source, cfg.search_space(), cfg.budget, alpha=o.alpha, beta=o.beta,
                           convention=o.convention, seed=cfg.search.seed,
                           random_starts=c.starts if random_starts is None else random_starts, kernels=kernels,
                           depth_nodes=depth_nodes, tolerance=c.tolerance if tolerance is None else tolerance,
                           maxiter=c.maxiter, polish_iterations=c.polish_iterations, polish_starts=c.polish_starts,
                           bound_gap=BOUND_GAP if bound_gap is None else bound_gap, callback=callback)


def print_verified(console, genotype) -> None:
    """Build ``genotype`` once on CPU and print its live params/MACs next to the closed form (torch convention).

    Used after a search with ``--build-check``; prints a note instead when torch is not installed. This checks
    the decoder against the closed form, not the budgets.
    """
    try:
        from ..model import verify_costs
    except ImportError as exc:
        console.print(f"[dim]not built: {exc.name} is not installed[/]")
        return
    check_memory(genotype)
    closed = network_costs(expand(genotype), "torch")
    with console.status("building the network on CPU to count its params and MACs…"):
        params, macs = verify_costs(genotype)

    def mark(a, b):
        return "[green]✓[/]" if a == b else f"[red]✗ closed form {b:,}[/]"

    console.print(f"build check (live nn.Module = closed form, torch convention, classifier included; not a budget "
                  f"check): params {params:,} {mark(params, closed.params)}   MACs {macs:,} {mark(macs, closed.macs)}")


def train_genotype(genotype, args: argparse.Namespace, console, out: Path | None = None, name: str | None = None) -> int:
    """Train a genotype as the flags in ``args`` say, rendering progress; used by `train` and `search --train`.

    Args:
        genotype: the network to decode and train.
        args: parsed flags of ``add_train_options`` (plus the optional train_seed, train_image_size).
        console: rich console; silenced on every torchrun process but the first.
        out: run folder; default ``runs/train-<name>-<genotype hash>-<dataset>``.
        name: names the default run folder (default "genotype").

    Returns:
        The exit status (0).
    """
    from ..genotype import Genotype, save_genotype
    from ..train import build_data, make_model, train

    cfg = resolve_train_config(args, notify=lambda line: console.print(f"[yellow]notice:[/] {line}"))
    if cfg.image_size == 0:
        cfg = cfg.with_overrides(image_size=genotype.image_size)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if not main_process:
        console.quiet = True  # torchrun: only the first process reports
    out = check_output(out or train_run_dir(genotype, name, cfg.dataset), "--out")
    resume = bool(getattr(args, "resume", False))
    if main_process:
        clean_stale_temps(out)
    try:  # the network at the training image size (the data loader reports a size the strides cannot take)
        sized = Genotype(genotype.stem, genotype.stages, genotype.head, cfg.image_size, genotype.in_channels,
                         genotype.num_classes)
    except ValueError:
        sized = genotype
    check_memory(sized, batch=max(1, cfg.batch_size // int(os.environ.get("WORLD_SIZE", "1") or 1)), training=True)

    if getattr(args, "evaluate_only", False):
        return _evaluate_only(genotype, args, cfg, out, console)
    data = build_data(cfg)
    model = make_model(genotype, data.num_classes, cfg)
    extra = {"genotype": genotype.to_text()}
    if getattr(args, "init", None):
        extra["init"] = _load_init(model, args.init, console)
    console.print(f"[bold]train[/] {genotype.to_text()}")
    console.print(escape(f"data: {data.description}; image {cfg.image_size}px; recipe: "
                         f"{args.train_config or PRESET_OF_DATASET.get(cfg.dataset)} → {out}"))
    with _ProgressView(console) as view:
        def callback(event):
            # genotype.json is written once train() has accepted the folder (a refused --resume
            # of another network must leave the folder as it was).
            if event.kind == "start" and main_process:
                save_genotype(genotype, out / "genotype.json")
            view.update(event)

        result = train(model, cfg, data, out, resume=resume, callback=callback, extra=extra)
    _summary(console, result)
    return 0


def _load_init(model, path, console) -> str:
    """Load ``--init`` weights into the fresh model; say which tensors keep their initialisation."""
    from ..weights import load_weights

    report = load_weights(model, path)
    console.print(f"init: {report.path}" + (f" (re-initialised: {', '.join(report.reinitialised)})"
                                             if report.reinitialised else ""))
    return str(report.path)


def _evaluate_only(genotype, args, cfg, out: Path, console) -> int:
    """``train --evaluate-only``: top-1/5 of the --init weights or the --resume checkpoint, nothing trained."""
    from ..train import CHECKPOINT, build_data, evaluate_model, load_checkpoint, make_model

    if bool(args.init) == bool(getattr(args, "resume", False)):
        raise ValueError("--evaluate-only: expected --init WEIGHTS or --resume (the run folder's checkpoint), one of them")
    data = build_data(cfg, eval_only=True)
    model = make_model(genotype, data.num_classes, cfg)
    if args.init:
        source = _load_init(model, args.init, console)
    else:
        state = load_checkpoint(out / CHECKPOINT)
        model.load_state_dict(state["model"])
        source = f"{out / CHECKPOINT} (epoch {state['epoch']})"
    print_evaluation(console, evaluate_model(model, cfg, data), source, data.description)
    return 0


def print_evaluation(console, result: dict, source: str, description: str) -> None:
    """One table: the weights, the data, images, loss, top-1, top-5."""
    from rich.table import Table

    table = Table(title="evaluated", title_justify="left", header_style="bold")
    for column in ("weights", "data", "images", "loss", "top-1", "top-5"):
        table.add_column(column)
    table.add_row(str(source), description, f"{result['images']:,}", f"{result['loss']:.4f}",
                  f"{result['top1']:.2f}%", f"{result['top5']:.2f}%")
    console.print(table)


class _ProgressView:
    """Rich rendering of TrainEvents: a bar per epoch, one line of metrics after each."""

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        # Output to a file or a pipe gets no live bar: a plain line per step event instead.
        self.lines = not console.is_terminal
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
        elif event.kind == "step" and self.lines:
            # Step events come every log_every steps (the recipe's run.log_every).
            done = event.step - event.epoch * event.steps_per_epoch
            self.console.print(f"epoch {event.epoch + 1}/{event.epochs} step {done}/{event.steps_per_epoch}  "
                               f"loss {event.loss:.4f}  lr {event.lr:.4g}  {event.images_per_s:,.0f} img/s")
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
    from ..train import best_epoch

    best = best_epoch(result.history)
    weights = (result.out_dir / "model.safetensors").is_file()
    if best is not None and weights:
        console.print(f"best val top-1 {best['val_top1']:.2f}% at epoch {best['epoch']}: weights in "
                      f"[bold]{escape(str(result.out_dir / 'best'))}[/]")
    console.print(f"metrics.csv, metrics.json, curves.png, checkpoint.pt, model.pt"
                  + (", model.safetensors + config.json" if weights else " (pip install 'deepmad-evo[safetensors]' "
                     "for model.safetensors)") + f" in [bold]{escape(str(result.out_dir))}[/]")


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
