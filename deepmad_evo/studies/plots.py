"""Pictures of studies: ρ coverage of a sample, accuracy vs ρ and entropy (Fig. 2), a tuning run's curves."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_coverage(rhos: Sequence[float], edges: Sequence[float], path: str | Path, title: str = "",
                  reference: float | None = None, entropies: Sequence[float] | None = None) -> None:
    """ρ of every sampled network against the strata (grey lines): a bar chart of networks per stratum,
    and, with ``entropies``, each network's entropy against its ρ."""
    plt = _pyplot()
    panels = 2 if entropies is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    ax.hist(list(rhos), bins=list(edges), color="tab:blue", edgecolor="white")
    ax.set_ylabel("networks per stratum")
    if entropies is not None:
        right = axes[0][1]
        right.scatter(list(rhos), list(entropies), s=18, color="tab:blue")
        right.set_ylabel("entropy H")
    for a in axes[0]:
        for e in edges:
            a.axvline(e, color="0.85", lw=0.6, zorder=0)
        if reference is not None:
            a.axvline(reference, color="tab:red", ls="--", lw=1, label=f"ρ0 = {reference:g}")
        a.set_xlim(edges[0], edges[-1])
        a.set_xlabel("ρ")
    if reference is not None:
        ax.legend(fontsize=8)
    fig.suptitle(title or f"{len(rhos)} networks over {len(edges) - 1} ρ strata")
    _save(fig, path)


def plot_study(rows: Sequence[dict], rho0: float | None, path: str | Path, title: str = "") -> None:
    """Fig. 2: top-1 against ρ and against entropy; the DeepMAD design at ρ0 as a red star."""
    plt = _pyplot()
    samples = [r for r in rows if r["kind"] == "sample" and r.get("top1") is not None]
    ref = [r for r in rows if r["kind"] == "deepmad" and r.get("top1") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "rho", "ρ"), (axes[1], "entropy", "entropy H")):
        inside = [r for r in samples if rho0 is None or r["rho"] <= rho0]
        outside = [r for r in samples if rho0 is not None and r["rho"] > rho0]
        ax.scatter([r[key] for r in inside], [r["top1"] for r in inside], color="tab:blue", s=22,
                   label="random, ρ ≤ ρ0" if rho0 is not None else "random")
        if outside:
            ax.scatter([r[key] for r in outside], [r["top1"] for r in outside], color="tab:gray", s=22,
                       label="random, ρ > ρ0")
        if ref:
            ax.scatter([r[key] for r in ref], [r["top1"] for r in ref], marker="*", s=220, color="tab:red",
                       edgecolor="black", zorder=5, label=f"DeepMAD at ρ0 = {rho0:g}" if rho0 else "DeepMAD")
        if key == "rho" and rho0 is not None:
            ax.axvline(rho0, color="tab:red", ls="--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "accuracy of random networks at one budget")
    _save(fig, path)


def plot_tune(trials: Sequence[dict], path: str | Path, title: str = "") -> None:
    """Validation top-1 per epoch of every tuning trial (stopped ones end early)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in trials:
        curve = [math.nan if v is None else v for v in t.get("history") or []]
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=t["name"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "tuning trials")
    _save(fig, path)
