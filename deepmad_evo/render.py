"""Rich rendering shared by the commands (CLI side only; the library never prints)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def si(value, digits: int = 4, *, compact: bool = False) -> str:
    """4.5e9 -> '4.5 G'; compact (the Pareto tables): no space, and the unit from a tenth of it on (4e8 -> '0.4G')."""
    if value is None:
        return "-"
    v = float(value)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if compact and v >= 0.1 * scale:
            return f"{v / scale:.{digits}g}{unit}"
        if not compact and abs(v) >= scale:
            return f"{v / scale:.{digits}g} {unit}"
    return f"{v:.{digits}g}"


def si_compact(value, digits: int = 4) -> str:
    """Display form of the Pareto tables: 2.5778e6 -> '2.578M'."""
    return si(value, digits, compact=True)


def report_table(report: dict, title: str | None = None) -> Table:
    """Per-stage table of a ``report.genotype_report`` (or traced module) dict."""
    from .latency.table import format_time

    lat = "latency" in report
    table = Table(title=title, title_justify="left", header_style="bold")
    for col, justify in (("stage", "left"), ("block", "left"), ("in→out", "right"), ("btn", "right"),
                         ("k", "right"), ("s", "right"), ("depth", "right"), ("side", "right"),
                         ("α·H_j", "right"), ("ρ prefix", "right"), ("MACs", "right"), ("params", "right")):
        table.add_column(col, justify=justify)
    if lat:
        table.add_column("latency", justify="right")
    for row in report["stages"]:
        table.add_row(
            row["name"], row["block"], f"{row['in']}→{row['out']}", "" if row.get("btn") is None else str(row["btn"]),
            str(row["k"]), str(row["s"]), str(row["depth"]), str(row["side"]),
            "" if row.get("entropy_term") is None else f"{row['entropy_term']:.2f}",
            f"{row['rho_prefix']:.4f}", si(row["macs"]), si(row["params"]),
            *([format_time(row["latency"])] if lat else []),
        )
    cls = report.get("classifier") or {}
    if cls.get("params") or lat:
        table.add_row("classifier" + (" + overhead" if lat else ""), "linear", "", "", "", "", "", "", "", "",
                      si(cls.get("macs")), si(cls.get("params")), *([format_time(report["latency_rest"])] if lat else []))
    table.add_section()
    table.add_row("total", "", "", "", "", "", str(report["layers"]) + " L", "", f"{report['entropy']:.2f}",
                  f"{report['rho']:.4f}", si(report["macs"]), si(report["params"]),
                  *([format_time(report["latency"])] if lat else []), style="bold")
    return table


def summary_lines(report: dict) -> list[str]:
    lines = [
        f"objective [bold]{report['objective']:.4f}[/] = entropy {report['entropy']:.4f} − depth penalty "
        f"{report['depth_penalty']:.4f}   (ρ {report['rho']:.4f}, L {report['layers']}, {report['convention']} convention: "
        f"MACs {report['macs']:,} params {report['params']:,})",
    ]
    checks = report.get("constraints") or {}
    if checks:
        parts = []
        for name, c in checks.items():
            mark = "[green]✓[/]" if c["ok"] else "[red]✗[/]"
            if name == "monotone":
                parts.append(f"{mark} channels non-decreasing")
            elif name == "rho":
                parts.append(f"{mark} ρ {c['value']:.4f} ≤ {c['limit']:g}")
            elif name == "latency":
                from .latency.table import format_time

                parts.append(f"{mark} predicted latency {format_time(c['value'])} ≤ {format_time(c['limit'])}")
            else:
                parts.append(f"{mark} {name} {si(c['value'])} ≤ {si(c['limit'])}")
        lines.append("constraints: " + "   ".join(parts))
    if "latency" in report:
        from .latency.table import format_time

        m = report["latency_model"]
        st = m["settings"]
        lines.append(f"predicted latency [bold]{format_time(report['latency'])}[/] on {m['device']} ({st['device']} batch "
                     f"{st['batch']} {st['precision']} {st['threads']} thread(s); table {m['table']}, {m['form']} model)")
    if report.get("text"):
        lines.append(f"text form: [cyan]{report['text']}[/]")
    return lines


def print_report(console: Console, report: dict, title: str | None = None) -> None:
    console.print(report_table(report, title))
    for line in summary_lines(report):
        console.print(line)


def print_cross_check(console, cc, title: str = "cross-check", returned: bool = False) -> None:
    """Both solutions side by side (per stage), the gap, the SLSQP runs and every warning.

    Args:
        console: the rich console.
        cc: a ``relax.CrossCheck``.
        title: table title.
        returned: the caller returns the better genotype (say so when the rounding wins).
    """
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for col, justify in (("stage", "left"), ("block", "left"), ("GA  k · out/btn · depth", "right"),
                         ("relaxed  out/btn · depth", "right"), ("rounded  k · out/btn · depth", "right")):
        table.add_column(col, justify=justify)
    ga, rounded, relaxed = cc.ga_genotype, cc.rounded_genotype, cc.relaxed_point

    def discrete(g, i):
        if g is None:
            return "-"
        if i < 0:
            return f"k{g.stem.k} · {g.stem.out}"
        st = g.stages[i]
        return f"k{st.k} · {st.out}/{st.btn} · {st.depth}"

    def real(i):
        if relaxed is None:
            return "-"
        if i < 0:
            return f"{relaxed['stem']:.1f}"
        return f"{relaxed['out'][i]:.1f}/{relaxed['btn'][i]:.1f} · {relaxed['depth'][i]:.2f}"

    table.add_row("stem", "conv", discrete(ga, -1), real(-1), discrete(rounded, -1))
    for i, st in enumerate(ga.stages):
        table.add_row(f"stage{i + 1}", st.block, discrete(ga, i), real(i), discrete(rounded, i))
    table.add_section()
    costs = cc.relaxed_costs or {}

    def cell(v, fmt=None):
        return "-" if v is None or not math.isfinite(v) else (fmt.format(v) if fmt else si(v))

    table.add_row("objective", "", cell(cc.ga_objective, "{:.2f}"), cell(cc.relaxed_objective, "{:.2f}"),
                  cell(cc.rounded_objective, "{:.2f}"), style="bold")
    for name, label, fmt in (("macs", "MACs", None), ("params", "params", None), ("rho", "ρ", "{:.4f}")):
        g = getattr(cc.ga_evaluation, name) if cc.ga_evaluation is not None else None
        r = getattr(cc.rounded_evaluation, name) if cc.rounded_evaluation is not None else None
        table.add_row(label, "", cell(g, fmt), cell(costs.get(name), fmt), cell(r, fmt))
    console.print(table)

    if math.isfinite(cc.gap):
        colour = "green" if cc.gap <= cc.tolerance else "yellow"
        split = (f" = depths {cc.depth_gap:.2%} + widths {cc.width_gap:.2%}" if math.isfinite(cc.depth_gap) else "")
        console.print(f"gap (relaxed − GA)/relaxed [bold {colour}]{cc.gap:.2%}[/]{split}   "
                      f"(tolerance {cc.tolerance:.2%}; relaxed with the GA's depths {cc.depth_fixed_objective:.2f})")
    if cc.depth_bound:
        b = cc.depth_bound
        state = "complete" if b["complete"] else f"{b['open']} nodes left open"
        gap = f"gap to the best discrete genotype [bold]{b['gap']:.2%}[/]" if "gap" in b else "no discrete genotype"
        stop = f", gap stop {b['relative_gap']:.2%}" if b.get("relative_gap") else ""
        console.print(f"integral-depth bound {b['bound']:.2f}: {gap} ({b['nodes']} SLSQP nodes, {state}{stop}, "
                      f"{b['pruned_infeasible']} pruned as infeasible)")
    nodes = f" + {cc.depth_bound['nodes']} branch-and-bound nodes" if cc.depth_bound else ""
    console.print(f"SLSQP {len(cc.starts)} runs{nodes} in {cc.solver_seconds:.2f} s, cross-check {cc.seconds:.2f} s")

    runs = Table(header_style="bold", box=None, padding=(0, 1))
    for col in ("run", "kernels", "start", "end", "iterations", "feasible", "status"):
        runs.add_column(col, justify="left" if col in ("run", "kernels", "status") else "right")
    for r in cc.starts:
        runs.add_row(r.origin, "/".join(map(str, r.kernels)), f"{r.start_objective:.2f}", f"{r.objective:.2f}",
                     str(r.iterations), "[green]yes[/]" if r.feasible else f"[red]no ({r.violation:.1e})[/]",
                     r.message if r.converged else f"[yellow]{r.message}[/]")
    console.print(runs)
    for w in cc.warnings:
        if not (cc.improved and w.startswith("the rounded relaxation")):
            console.print(f"[bold yellow]warning:[/] {w}")
    if cc.improved:
        console.print(f"[bold yellow]warning:[/] [bold]the rounded relaxation beats the GA[/] "
                      f"({cc.rounded_objective:.2f} > {cc.ga_objective:.2f})"
                      + ("; this run returns it" if returned else "") + f": [cyan]{cc.rounded_genotype.to_text()}[/]")


def print_latency(console: Console, rec: dict) -> None:
    """One line: a winner's predicted latency and, when timed, its measured latency against the budget."""
    from .latency.table import format_time

    st = rec["settings"]
    line = (f"latency on {rec['device']} (batch {st['batch']}, {st['precision']}, {st['threads']} thread(s)): "
            f"predicted [bold]{format_time(rec['predicted'])}[/]")
    if rec.get("measured") is not None:
        ratio = rec["measured"] / rec["budget"]
        mark = "[green]✓[/]" if ratio <= 1.0 else "[yellow]~[/]" if ratio <= 1.05 else "[red]✗[/]"
        line += (f", measured [bold]{format_time(rec['measured'])}[/] ± {100 * rec['noise']:.0f} % "
                 f"({rec['clock']} clock, load {rec['load']:.1f}); {mark} {ratio:.2f} × the budget "
                 f"{format_time(rec['budget'])}")
    else:
        line += f"; [dim]not timed: {rec.get('not_timed')}[/]"
    console.print(line)
