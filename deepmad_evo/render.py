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
    table = Table(title=title, title_justify="left", header_style="bold")
    for col, justify in (("stage", "left"), ("block", "left"), ("in→out", "right"), ("btn", "right"),
                         ("k", "right"), ("s", "right"), ("depth", "right"), ("side", "right"),
                         ("α·H_j", "right"), ("ρ prefix", "right"), ("MACs", "right"), ("params", "right")):
        table.add_column(col, justify=justify)
    for row in report["stages"]:
        table.add_row(
            row["name"], row["block"], f"{row['in']}→{row['out']}", "" if row.get("btn") is None else str(row["btn"]),
            str(row["k"]), str(row["s"]), str(row["depth"]), str(row["side"]),
            "" if row.get("entropy_term") is None else f"{row['entropy_term']:.2f}",
            f"{row['rho_prefix']:.4f}", si(row["macs"]), si(row["params"]),
        )
    cls = report.get("classifier") or {}
    if cls.get("params"):
        table.add_row("classifier", "linear", "", "", "", "", "", "", "", "", si(cls["macs"]), si(cls["params"]))
    table.add_section()
    table.add_row("total", "", "", "", "", "", str(report["layers"]) + " L", "", f"{report['entropy']:.2f}",
                  f"{report['rho']:.4f}", si(report["macs"]), si(report["params"]), style="bold")
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
            else:
                parts.append(f"{mark} {name} {si(c['value'])} ≤ {si(c['limit'])}")
        lines.append("constraints: " + "   ".join(parts))
    if report.get("text"):
        lines.append(f"text form: [cyan]{report['text']}[/]")
    return lines


def print_report(console: Console, report: dict, title: str | None = None) -> None:
    console.print(report_table(report, title))
    for line in summary_lines(report):
        console.print(line)
