"""`build GENOTYPE`: decode a genotype into its nn.Module, show the module tree and verify the costs."""

from __future__ import annotations

import argparse
import json

from ..costs import check_memory, network_costs
from ..limits import MAX_CLASSES, arg_image_side, arg_int
from ..models import resolve_genotype
from ..units import expand


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="decode a genotype into its nn.Module; show the tree and verified costs",
                       description="Decode GENOTYPE into its torchvision-style nn.Module, print the module tree and "
                       "count params/MACs on the live module next to the closed form (torch convention).")
    p.add_argument("genotype", metavar="GENOTYPE",
                   help="run directory, genotype JSON, text form, reference structure file or zoo name "
                        "(r50, mb-29m, deepmad-r50-published, …)")
    p.add_argument("--image-size", type=arg_image_side, default=None, help="override the image size")
    p.add_argument("--num-classes", type=arg_int(1, MAX_CLASSES), default=None, help="classifier outputs (default: the genotype's)")
    p.add_argument("--depth", type=arg_int(0, 1000), default=3, help="module-tree levels to expand (default 3)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object, no tree")


def build_summary(genotype, num_classes: int | None = None) -> tuple[object, dict]:
    """Build the module and compare its live params/MACs with the closed form; returns (model, summary dict)."""
    from dataclasses import replace

    from ..model import build_model, live_costs

    if num_classes is not None:
        genotype = replace(genotype, num_classes=num_classes)
    model = build_model(genotype)
    net = expand(genotype)
    closed = network_costs(net, "torch")
    params, macs = live_costs(model, genotype.image_size, genotype.in_channels)
    reference = network_costs(net, "tinynas")
    summary = {
        "text": genotype.to_text(), "image_size": genotype.image_size,
        "params": params, "macs": macs,
        "closed_form": {"params": closed.params, "macs": closed.macs},
        "verified": params == closed.params and macs == closed.macs,
        "tinynas": {"params": reference.params, "macs": reference.macs},
        "layers": net.num_layers,
        "segments": [{"index": j, "channels": c, "side": r, "reduction": info["reduction"]}
                     for j, (c, r, info) in enumerate(zip(net.segment_channels(), net.segment_sides(),
                                                          model.feature_info))],
    }
    return model, summary


def module_tree(model, depth: int):
    """A rich Tree of ``model``'s modules down to ``depth`` levels, with parameter counts."""
    from rich.markup import escape
    from rich.tree import Tree

    from ..render import si

    def label(name, module):
        n = sum(p.numel() for p in module.parameters())
        extra = module.extra_repr()
        body = (f"[bold]{escape(name)}[/] " if name else "") + type(module).__name__ \
            + (f"({escape(extra)})" if extra else "")
        return body + (f"  [dim]{si(n)} params[/]" if n else "")

    def add(node, module, level):
        children = list(module.named_children())
        if not children:
            return
        if level >= depth:
            node.add(f"[dim]… {len(children)} submodules[/]")
            return
        for name, child in children:
            add(node.add(label(name, child)), child, level + 1)

    root = Tree(label("", model))
    add(root, model, 0)
    return root


def run(args: argparse.Namespace, console) -> int:
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size: expected a positive integer, got {args.image_size}")
    if args.depth < 0:
        raise ValueError(f"--depth: expected an integer >= 0, got {args.depth}")
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes: expected an integer >= 1, got {args.num_classes}")
    genotype = resolve_genotype(args.genotype, image_size=args.image_size)
    check_memory(genotype, num_classes=args.num_classes)
    model, summary = build_summary(genotype, args.num_classes)
    if args.json:
        print(json.dumps(summary))
        return 0 if summary["verified"] else 1
    from rich.table import Table

    console.print(module_tree(model, args.depth))
    table = Table(title="costs (one image)", title_justify="left", header_style="bold")
    for col in ("", "live module", "closed form (torch)", "", "tinynas convention"):
        table.add_column(col, justify="right")
    closed = summary["closed_form"]
    for key in ("params", "macs"):
        ok = summary[key] == closed[key]
        table.add_row(key, f"{summary[key]:,}", f"{closed[key]:,}", "[green]✓[/]" if ok else "[red]✗[/]",
                      f"{summary['tinynas'][key]:,.0f}")
    console.print(table)
    console.print("segments (channels × side, reduction): " + "  ".join(
        f"{s['channels']}×{s['side']}² /{s['reduction']}" for s in summary["segments"]))
    console.print(f"layers {summary['layers']}   text form: [cyan]{summary['text']}[/]")
    if not summary["verified"]:
        console.print("[red]the live module differs from the closed-form costs[/]")
        return 1
    return 0


