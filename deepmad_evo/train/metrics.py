"""Per-epoch metrics: metrics.csv / metrics.json and the curves picture."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path


from ..io import atomic_write_bytes, atomic_write_text
from .config import TrainConfig

# ---------------------------------------------------------------------------------------- metrics
METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_top1", "val_top5", "ema_val_loss",
                  "ema_val_top1", "ema_val_top5", "images_per_s", "epoch_seconds")


def write_metrics(history: list[dict], out_dir: Path, config: TrainConfig) -> None:
    """metrics.csv (one row per epoch) and metrics.json (rows plus the config), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in METRIC_COLUMNS})
    atomic_write_text(out_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.json", json.dumps({"config": config.to_dict(), "epochs": history},
                                                           indent=1) + "\n")


def plot_curves(history: list[dict], path: str | os.PathLike) -> None:
    """curves.png: losses, validation accuracy and learning rate per epoch (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]

    def series(key):
        return [math.nan if row.get(key) is None else row[key] for row in history]

    dots = {"marker": "o", "markersize": 3}  # a one-epoch run is a single point: a line alone would not show it
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(epochs, series("train_loss"), label="train", **dots)
    axes[0].plot(epochs, series("val_loss"), label="val", **dots)
    axes[0].set_title("loss")
    axes[1].plot(epochs, series("val_top1"), label="top-1", **dots)
    axes[1].plot(epochs, series("val_top5"), label="top-5", **dots)
    if any(row.get("ema_val_top1") is not None for row in history):
        axes[1].plot(epochs, series("ema_val_top1"), label="EMA top-1", **dots)
    axes[1].set_title("validation accuracy (%)")
    axes[2].plot(epochs, series("lr"), **dots)
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
