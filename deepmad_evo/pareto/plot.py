"""The picture of a Pareto run: objective against MACs, per-budget optima, the sweep front, published points."""

from __future__ import annotations

import io
import os

from ..io import atomic_write_bytes
from .budgets import latency_label, quantity_label


def plot_pareto(run: dict, path: str | os.PathLike) -> None:
    """Draw objective vs MACs or predicted latency (log axis) — per-budget optima, the sweep front, published
    points — to a PNG.

    Args:
        run: a ``pareto.json`` dict.
        path: the PNG to write (atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 5.2), dpi=120)
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    ax = fig.add_subplot()
    x = run.get("axis", "macs")  # "latency" in a latency run
    sweep = run.get("sweep")
    if sweep and sweep["front"]:
        front = sorted(sweep["front"], key=lambda p: p["macs"])
        label = f"NSGA-II front ({len(front)} points)"
        xy = ([p["macs"] for p in front], [p["objective"] for p in front])
        if sweep.get("params_max") is not None:
            # Three objectives: colour carries the params axis of the front.
            dots = ax.scatter(*xy, s=9, c=[p["params"] for p in front], cmap="viridis", alpha=0.6, label=label,
                              zorder=2)
            bar = fig.colorbar(dots, ax=ax, pad=0.01)
            bar.set_label("front params")
            bar.formatter = FuncFormatter(lambda v, _: quantity_label(v) if v > 0 else "0")
            bar.update_ticks()
        else:
            ax.scatter(*xy, s=9, color="0.6", alpha=0.7, label=label, zorder=2)
        ax.axvspan(sweep["macs_min"], sweep["macs_max"], color="0.5", alpha=0.06, zorder=0)
    rows = run["points"]
    for r in rows:
        ax.axvline(r["budget"][x], color="tab:blue", lw=0.6, ls=":", alpha=0.6, zorder=1)
    if rows:
        # A staircase: the best objective reachable within a budget only changes at the budgets.
        ax.plot([r[x] for r in rows], [r["objective"] for r in rows], drawstyle="steps-post", color="tab:blue",
                lw=1, alpha=0.5, zorder=3)
        ax.plot([r[x] for r in rows], [r["objective"] for r in rows], "o", color="tab:blue", ms=7, mec="white",
                label="per-budget optimum", zorder=5)
        for r in rows:
            ax.annotate(r["label"], (r[x], r["objective"]), textcoords="offset points", xytext=(-7, 7),
                        ha="right", fontsize=8, color="tab:blue", zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for ref in run.get("references", []):
        ax.scatter([ref[x]], [ref["objective"]], marker="*", s=160, color="tab:red", zorder=4)
        ax.annotate(ref["name"], (ref[x], ref["objective"]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8, color="tab:red", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if run.get("references"):
        ax.scatter([], [], marker="*", s=160, color="tab:red", label="published")
    ax.set_xscale("log")
    ticks = sorted({r["budget"][x] for r in rows} | ({sweep["macs_min"], sweep["macs_max"]} if sweep else set()))
    ax.set_xticks(ticks)
    label = latency_label if x == "latency" else quantity_label
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: label(v) if v > 0 else "0"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    if x == "latency":
        b = run["config"]["budget"]
        ax.set_xlabel(f"predicted latency (table {b['latency_table']})")
        ax.set_title(f"{run['config']['name']}: best objective per latency budget")
    else:
        ax.set_xlabel(f"MACs ({run['convention']} convention)")
        ax.set_title(f"{run['config']['name']}: best objective per MAC budget")
    ax.set_ylabel("DeepMAD objective (entropy − β·Q)")
    hv = run["hypervolume"]
    text = f"hypervolume {hv['points']:.5g}" + (f" (front {hv['front']:.5g})" if "front" in hv else "")
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.3")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
