"""Rich rendering shared by the commands (CLI side only; the library never prints)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def si(value, digits: int = 4) -> str:
    """4.5e9 -> '4.5 G'."""
    if value is None:
        return "-"
    v = float(value)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {unit}"
    return f"{v:.{digits}g}"


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
