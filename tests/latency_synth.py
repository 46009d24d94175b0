"""Synthetic latency tables for tests: op times from a known formula, so nothing depends on timing."""

from __future__ import annotations

import numpy as np

from deepmad_evo.latency.plan import plan_cells
from deepmad_evo.latency.table import LatencyTable, Settings, host_fingerprint
from deepmad_evo.units import expand

# t = T0 + work / SPEED: a per-call overhead plus constant throughput.
T0, SPEED = 2e-5, 5e9


def op_time(work: float) -> float:
    return T0 + work / SPEED


def synthetic_table(configs, networks: int = 0, overhead=(1.0, 0.0, 0.0), seed: int = 0) -> LatencyTable:
    """A table of this machine for ``configs``: every planned cell timed by ``op_time``; plus
    ``networks`` random networks per config whose time is a·S + b·units + c, S the plain model sum."""
    fp = host_fingerprint("cpu")
    table = LatencyTable(device=fp, settings=Settings(), versions={"synthetic": "1"},
                         timing={"rounds": 5, "clock": "synthetic"}, presets=[c.name for c in configs])
    for cfg in configs:
        for cell in plan_cells(cfg.search_space()):
            table.ops[cell.key] = {"seconds": op_time(cell.work), "noise": 0.0, "load": 0.0}
    a, b, c = overhead
    if networks:
        from deepmad_evo.latency.model import LatencyModel

        plain = LatencyModel(table, "sum")
        rng = np.random.default_rng(seed)
        for cfg in configs:
            space = cfg.search_space()
            for x in space.repair_monotone(space.sample(networks, rng)):
                g = space.genotype(x)
                net = expand(g)
                table.networks.append({"text": g.to_text(), "seconds": a * plain.predict(net) + b * len(net.units) + c,
                                       "noise": 0.0, "load": 0.0, "role": "calibration"})
    return table


def tiny_table_file(directory) -> str:
    """A synthetic table of the ``tiny`` preset with 6 calibration networks (overhead a 1.1, b 20 µs, c 0.1 ms), saved."""
    from deepmad_evo.config import load_config

    path = directory / "tiny.json"
    synthetic_table([load_config("tiny")], networks=6, overhead=(1.1, 2e-5, 1e-4)).save(path)
    return path


def _fc_work(net):
    return net.out_channels * net.units[-1].r_out ** 2 + net.out_channels * net.genotype.num_classes


def exact_seconds(ops) -> float:
    """Σ op_time over op uses, each computed directly from its work (no table)."""
    from deepmad_evo.latency.ops import work

    total = 0.0
    for u in ops:
        w = float(np.asarray(u.weight))
        if w:
            total += w * op_time(float(work(u.op, u.k, u.s, u.r, u.extra, u.c_a, u.c_b)))
    return total
