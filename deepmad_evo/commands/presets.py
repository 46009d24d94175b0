"""`presets`: list the search presets (budgets, template, convention) and the zoo's networks."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "presets", help="list the presets (what each reproduces, budgets, convention) and the zoo's networks",
        description="List the search presets shipped with the package — the paper setting each reproduces, its "
        "template, its budgets (MACs, the paper's 'FLOPs', and params) and the cost convention they are counted "
        "in — and the zoo names every GENOTYPE argument accepts.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")


def describe(path) -> str:
    """The first comment line of a preset file: what it reproduces."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def preset_rows() -> list[dict]:
    from ..config import CONFIG_DIR, load_config, preset_names

    rows = []
    for name in preset_names():
        cfg = load_config(name)
        t, b = cfg.template, cfg.budget
        blocks = sorted(set(t.blocks))
        rows.append({"name": name, "description": describe(CONFIG_DIR / f"{name}.toml"),
                     "blocks": blocks, "strides": list(t.strides), "head": t.head, "image_size": t.image_size,
                     "macs": b.macs, "params": b.params, "rho": b.rho, "convention": cfg.objective.convention})
    return rows


def zoo_rows() -> list[dict]:
    from ..models import published_index, zoo_index

    rows = [{"name": n, "kind": f"our search (preset {e['config']['name']})", "text": e["text"]}
            for n, e in sorted(zoo_index().items())]
    rows += [{"name": n, "kind": f"published ({e['title']})", "file": e["file"]}
             for n, e in sorted(published_index().items())]
    return rows


def _qty(v) -> str:
    if v is None:
        return "off"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def run(args: argparse.Namespace, console) -> int:
    presets, zoo = preset_rows(), zoo_rows()
    if args.json:
        print(json.dumps({"presets": presets, "zoo": zoo}))
        return 0
    from rich.table import Table

    table = Table(title="presets (--config NAME); budgets are MACs (the paper's 'FLOPs') and params")
    for col in ("preset", "MACs", "params", "ρ0", "convention", "template", "reproduces"):
        table.add_column(col, overflow="fold")
    for r in presets:
        head = f" head {r['head']}" if r["head"] else ""
        template = f"{'/'.join(r['blocks'])} s{''.join(map(str, r['strides']))}{head} @{r['image_size']}"
        table.add_row(r["name"], _qty(r["macs"]), _qty(r["params"]), f"{r['rho']:g}", r["convention"], template,
                      r["description"])
    console.print(table)
    console.print("[dim]--budget X alone scales the params budget by the preset's params/MACs ratio; "
                  "--params sets it, --params off drops it.[/]")
    zt = Table(title="zoo names (a GENOTYPE argument of inspect, build, export, train, cross-check)")
    zt.add_column("name")
    zt.add_column("what")
    for r in zoo:
        zt.add_row(r["name"], r["kind"])
    console.print(zt)
    return 0
