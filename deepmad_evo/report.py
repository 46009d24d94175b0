"""JSON-ready reports of one network: totals, per-segment and per-stage rows, constraint checks."""

from __future__ import annotations

import math
from typing import Sequence

from .genotype import Genotype
from .io import json_number
from .objective import DEFAULT_BETA, evaluate, prefix_rho
from .problem import Budget
from .units import expand


def constraint_checks(macs, params, rho, layers, channels: Sequence[int], budget: Budget | None,
                      latency: float | None = None) -> dict:
    """{name: {value, limit, ok}} for every constraint the budget sets (``latency``: predicted seconds)."""
    if budget is None:
        return {}
    checks = {}
    if budget.rho is not None:
        checks["rho"] = {"value": rho, "limit": budget.rho, "ok": bool(rho <= budget.rho)}
    if budget.macs is not None:
        checks["macs"] = {"value": macs, "limit": budget.macs, "ok": bool(macs <= budget.macs)}
    if budget.params is not None:
        checks["params"] = {"value": params, "limit": budget.params, "ok": bool(params <= budget.params)}
    if budget.max_layers is not None:
        checks["max_layers"] = {"value": layers, "limit": budget.max_layers, "ok": bool(layers <= budget.max_layers)}
    if budget.latency is not None and latency is not None:
        checks["latency"] = {"value": latency, "limit": budget.latency, "ok": bool(latency <= budget.latency)}
    if budget.monotone:
        ok = all(a <= b for a, b in zip(channels, channels[1:]))
        checks["monotone"] = {"value": list(channels), "limit": "non-decreasing", "ok": ok}
    return checks


def genotype_report(genotype: Genotype, alpha=None, beta: float = DEFAULT_BETA, convention: str = "torch",
                    budget: Budget | None = None) -> dict:
    """Everything ``inspect`` shows for a genotype, as a JSON-ready dict.

    Args:
        genotype: the network.
        alpha, beta, convention: objective weights and cost convention.
        budget: when given, a ✓/✗ check per constraint is included.

    Returns:
        A dict with totals (macs, params, rho, rho_prefix, entropy, entropy_terms, depth_penalty = β·Q,
        objective, layers, convention), ``segments`` and ``stages`` rows, ``constraints``, the
        genotype (JSON form) and its text form.
    """
    net = expand(genotype)
    ev = evaluate(net, alpha, beta, convention)
    costs = ev.costs
    model = budget.latency_model() if budget is not None else None
    unit_latency = model.predict_units(net) if model is not None else None
    rows = []
    # Group units by stage (stem = -1, head = len(stages)) keeping order.
    cum_L, cum_lnw = 0, 0.0
    seg_end_term = {}
    groups: dict[int, list[int]] = {}
    for i, u in enumerate(net.units):
        groups.setdefault(u.stage, []).append(i)
    for stage, idx in groups.items():
        units = [net.units[i] for i in idx]
        first, last = units[0], units[-1]
        for u in units:
            cum_L += len(u.layers)
            cum_lnw += sum(math.log(c.width) for c in u.layers)
        is_seg_end = idx[-1] == len(net.units) - 1 or net.units[idx[-1] + 1].segment != last.segment
        name = "stem" if first.kind == "stem" else "head" if first.kind == "head" else f"stage{stage + 1}"
        rows.append({
            "name": name, "block": first.block or "conv", "in": first.c_in, "out": last.c_out,
            "btn": first.btn if first.kind == "block" else None, "k": first.k, "s": first.s,
            "depth": len(units), "side": last.r_out, "segment": last.segment,
            "entropy_term": ev.entropy_terms[last.segment] if is_seg_end else None,
            "rho_prefix": float(prefix_rho(cum_lnw, cum_L)),
            "macs": json_number(sum(costs.unit_macs[i] for i in idx)), "params": json_number(sum(costs.unit_params[i] for i in idx)),
        })
        if unit_latency is not None:
            rows[-1]["latency"] = sum(unit_latency[i] for i in idx)
        if is_seg_end:
            seg_end_term[last.segment] = name
    segments = [{"index": j, "ends_at": seg_end_term[j], "channels": ev.segment_channels[j], "side": ev.segment_sides[j],
                 "layers": ev.segment_layers[j], "entropy_term": ev.entropy_terms[j], "rho_prefix": ev.rho_prefix[j],
                 "alpha": ev.alpha[j]} for j in range(net.num_segments)]
    classifier = {"macs": json_number(costs.macs - sum(costs.unit_macs)), "params": json_number(costs.params - sum(costs.unit_params))}
    latency = None
    extra = {}
    if model is not None:
        rest = model.rest_seconds(net)
        latency = float(sum(unit_latency) + rest)
        t = model.table
        extra = {"latency": latency, "latency_rest": rest, "latency_model": {
            "table": budget.latency_table, "device": t.device.get("name"), "settings": t.settings.to_dict(),
            "form": model.form, "coef": list(model.coef)}}
    return {
        **extra,
        "source": "genotype", "convention": convention,
        "macs": json_number(costs.macs), "params": json_number(costs.params), "rho": ev.rho, "rho_prefix": list(ev.rho_prefix),
        "entropy": ev.entropy, "entropy_terms": list(ev.entropy_terms), "depth_penalty": ev.weighted_depth_penalty,
        "objective": ev.objective, "layers": ev.layers, "alpha": list(ev.alpha), "beta": ev.beta,
        "segments": segments, "stages": rows, "classifier": classifier,
        "constraints": constraint_checks(costs.macs, costs.params, ev.rho, ev.layers,
                                         [st.out for st in genotype.stages], budget, latency),
        "genotype": genotype.to_dict(), "text": genotype.to_text(),
    }
