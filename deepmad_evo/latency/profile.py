"""Time ops and whole networks on this machine and write a latency table (imports torch lazily).

Protocol, chosen for a shared, noisy machine: a fixed thread count; every op is built once with
the modules ``model.py`` uses; each timing sample runs the op enough times to last at least
``min_sample`` seconds; after a warm-up, ``rounds`` samples are taken *interleaved* across a
group of ops (round 1 of every op, then round 2, …, in a seeded shuffled order), so a burst of
load hits one sample of many ops rather than every sample of one. An entry keeps the median, the
noise (interquartile range / median) and the 1-minute load average. The table is written
atomically after every group, so an interrupted profile resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..genotype import Genotype
from .plan import GRID_RATIO, Cell, plan_cells
from .table import LatencyTable, LatencyTableError, Settings, host_fingerprint, load_table

GROUP = 24  # ops timed interleaved together (and saved together)


@dataclass(frozen=True)
class Timing:
    """The timing protocol."""

    rounds: int = 5
    min_sample: float = 1e-3  # seconds per sample, at least
    warmup: float = 0.02  # seconds of warm-up per op, at least (and two calls)

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 3 <= self.rounds <= 1000:
            raise ValueError(f"--rounds: expected an integer in [3, 1000], got {self.rounds!r}")
        for name in ("min_sample", "warmup"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 10):
                raise ValueError(f"{name}: expected seconds in [0, 10], got {v!r}")

    def to_dict(self) -> dict:
        return {"rounds": self.rounds, "min_sample_s": self.min_sample, "warmup_s": self.warmup, "interleaved": True,
                "statistic": "median", "noise": "IQR/median", "grid_ratio": GRID_RATIO}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        raise LatencyTableError("profile: torch is not installed; expected `pip install deepmad-evo`") from None
    return torch


def check_device(settings: Settings) -> str | None:
    """Raise ``LatencyTableError`` when the device cannot run; return the GPU name for ``cuda``."""
    torch = _torch()
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise LatencyTableError("--device: cuda asked for, but CUDA is not available here "
                                    f"(torch {torch.__version__}); expected a machine with a GPU, or --device cpu")
        return torch.cuda.get_device_name(0)
    return None


def fingerprint(settings: Settings) -> dict:
    return host_fingerprint(settings.device, check_device(settings))


def versions() -> dict:
    torch = _torch()
    import torchvision

    from .. import __version__

    out = {"deepmad_evo": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": np.__version__, "python": platform.python_version()}
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


class _Runner:
    """Holds the device, dtype and memory format, and runs/timings ops under them."""

    def __init__(self, settings: Settings):
        torch = self.torch = _torch()
        self.settings = settings
        self.device = torch.device("cuda" if settings.device == "cuda" else "cpu")
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[settings.precision]
        self.format = torch.channels_last if settings.channels_last else torch.contiguous_format
        torch.set_num_threads(settings.threads)

    @property
    def clock(self) -> str:
        """``thread``: CPU time of this thread, blind to time spent waiting for a core on a loaded machine
        (exact for one CPU thread, where torch runs every op in the calling thread); ``wall`` otherwise."""
        return "thread" if self.device.type == "cpu" and self.settings.threads == 1 else "wall"

    def now(self):
        return time.thread_time if self.clock == "thread" else time.perf_counter

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def tensor(self, c: int, r: int, generator):
        t = self.torch.randn(self.settings.batch, c, r, r, generator=generator)
        return t.to(self.device, self.dtype).contiguous(memory_format=self.format)

    def module(self, m):
        return m.eval().to(self.device, self.dtype, memory_format=self.format) if hasattr(m, "eval") else m

    def op(self, cell: Cell, generator) -> tuple[Callable, object]:
        """The callable and input of one cell, built with ``model.py``'s modules."""
        torch = self.torch
        from torch import nn
        from torchvision.ops import SqueezeExcitation

        from ..model import ACTIVATIONS, _conv
        from ..units import Conv, se_width

        op, k, s, r, extra, c_a, c_b = cell.key
        if op == "conv":
            return self.module(_conv(Conv(c_a, c_b, k, s), None)), self.tensor(c_a, r, generator)
        if op == "convsq":
            return self.module(_conv(Conv(c_a, c_a, k, s), None)), self.tensor(c_a, r, generator)
        if op == "dw":
            return self.module(_conv(Conv(c_a, c_a, k, s, dw=True), None)), self.tensor(c_a, r, generator)
        if op == "act":
            return self.module(ACTIVATIONS[extra](inplace=True)), self.tensor(c_a, r, generator)
        if op == "se":
            m = SqueezeExcitation(c_a, se_width(c_a), activation=ACTIVATIONS[extra])
            return self.module(m), self.tensor(c_a, r, generator)
        if op == "add":
            y = self.tensor(c_a, r, generator)
            return (lambda x: x + y), self.tensor(c_a, r, generator)
        if op == "pool":
            return self.module(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)), self.tensor(c_a, r, generator)
        if op == "fc":
            pool, linear = nn.AdaptiveAvgPool2d(1), self.module(nn.Linear(c_a, int(extra)))
            return (lambda x: linear(torch.flatten(pool(x), 1))), self.tensor(c_a, r, generator)
        raise ValueError(f"op: unknown kind {op!r}")

    def network(self, genotype: Genotype, generator):
        from ..model import build_model

        model = self.module(build_model(genotype))
        return model, self.tensor(genotype.in_channels, genotype.image_size, generator)

    def time(self, items: Sequence[tuple[Callable, object]], timing: Timing, rng: np.random.Generator,
             on_round: Callable[[int], None] | None = None) -> list[dict]:
        """Interleaved timing of ``items``; per item {"seconds": median, "noise": IQR/median, "load"}."""
        torch = self.torch
        loads = []
        clock = self.now()
        with torch.inference_mode():
            inner = []
            for fn, x in items:
                fn(x)
                self.sync()
                t0 = clock()
                fn(x)
                self.sync()
                one = max(clock() - t0, 1e-7)
                inner.append(max(1, int(np.ceil(timing.min_sample / one))))
                reps = max(1, int(np.ceil(timing.warmup / one)))
                for _ in range(reps):
                    fn(x)
                self.sync()
            samples = [[] for _ in items]
            for rnd in range(timing.rounds):
                loads.append(os.getloadavg()[0])
                for i in rng.permutation(len(items)):
                    fn, x = items[i]
                    n = inner[i]
                    self.sync()
                    t0 = clock()
                    for _ in range(n):
                        fn(x)
                    self.sync()
                    samples[i].append((clock() - t0) / n)
                if on_round is not None:
                    on_round(rnd)
        load = float(np.median(loads))
        out = []
        for s in samples:
            q25, med, q75 = np.percentile(s, [25, 50, 75])
            out.append({"seconds": float(med), "noise": float((q75 - q25) / med), "load": round(load, 2),
                        "clock": self.clock})
        return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def open_table(path: Path, settings: Settings, fp: dict, timing: Timing, force: bool) -> LatencyTable:
    """The table to extend: the one at ``path`` when it matches this machine and settings, else a fresh one.

    Raises:
        LatencyTableError: ``path`` holds a corrupt table, or one measured elsewhere / with other
            settings, and ``force`` is off.
    """
    if path.exists() and not force:
        table = load_table(path)
        table.check_host(fp, settings)
        return table
    return LatencyTable(device=fp, settings=settings, versions=versions(), timing=timing.to_dict(), created=_now())


def profile(configs: Sequence, settings: Settings, out: str | os.PathLike, *, timing: Timing = Timing(),
            networks: int = 8, seed: int = 0, force: bool = False,
            callback: Callable[[dict], None] | None = None) -> LatencyTable:
    """Time every op the configs' search spaces need, plus ``networks`` random networks per config.

    Args:
        configs: ``config.Config`` objects (presets) whose spaces to cover.
        settings: device, batch, precision, threads, channels-last.
        out: the table file; an existing table of this machine and settings is resumed.
        timing: the timing protocol (a resumed table keeps its own).
        networks: random networks per config timed whole, to fit the per-network overhead.
        seed: seeds the random networks and the interleaving order.
        force: start afresh over a table measured elsewhere or with other settings.
        callback: progress, ``{"phase", "done", "total", "load"}``.

    Returns:
        The written ``LatencyTable``.
    """
    from .plan import random_networks

    out = Path(out)
    fp = fingerprint(settings)
    table = open_table(out, settings, fp, timing, force)
    timing = Timing(table.timing.get("rounds", timing.rounds), table.timing.get("min_sample_s", timing.min_sample),
                    table.timing.get("warmup_s", timing.warmup))
    report = callback or (lambda info: None)
    runner = _Runner(settings)
    table.timing["clock"] = runner.clock
    torch = runner.torch
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    cells: dict[tuple, Cell] = {}
    for cfg in configs:
        for c in plan_cells(cfg.search_space(), settings.device, settings.batch):
            cells.setdefault(c.key, c)
        if cfg.name not in table.presets:
            table.presets.append(cfg.name)
    todo = [c for key, c in cells.items() if key not in table.ops]
    nets = []
    for cfg in configs:
        for g in random_networks(cfg, networks, seed):
            if not any(n["text"] == g.to_text() for n in table.networks):
                nets.append(g)
    total = len(todo) + len(nets)
    done = 0
    t_start = time.perf_counter()
    base_seconds = table.profile_seconds
    report({"phase": "ops", "done": 0, "total": total, "load": os.getloadavg()[0], "skipped": len(cells) - len(todo)})
    flush = torch.get_flush_denormal() if hasattr(torch, "get_flush_denormal") else False
    torch.set_flush_denormal(True)  # repeated in-place SiLU would otherwise drift into denormals
    try:
        for i in range(0, len(todo), GROUP):
            group = todo[i:i + GROUP]
            results = runner.time([runner.op(c, gen) for c in group], timing, rng)
            for c, res in zip(group, results):
                table.ops[c.key] = res
            done += len(group)
            table.profile_seconds = base_seconds + time.perf_counter() - t_start
            table.save(out)
            report({"phase": "ops", "done": done, "total": total, "load": results[0]["load"]})
    finally:
        torch.set_flush_denormal(flush)
    for g in nets:
        results = runner.time([runner.network(g, gen)], timing, rng)
        table.networks.append({"text": g.to_text(), **results[0], "role": "calibration"})
        done += 1
        table.profile_seconds = base_seconds + time.perf_counter() - t_start
        table.save(out)
        report({"phase": "networks", "done": done, "total": total, "load": results[0]["load"]})
    if not todo and not nets:
        table.save(out)
    return table


def measure_networks(genotypes: Sequence[Genotype], settings: Settings, timing: Timing = Timing(), seed: int = 0,
                     callback: Callable[[int], None] | None = None) -> list[dict]:
    """Time whole decoded networks under ``settings``, interleaved; per network {"seconds", "noise", "load"}."""
    check_device(settings)
    runner = _Runner(settings)
    gen = runner.torch.Generator().manual_seed(seed)
    items = [runner.network(g, gen) for g in genotypes]
    return runner.time(items, timing, np.random.default_rng(seed), callback)


def time_winner(genotype: Genotype, budget, timed: bool = True, rounds: int = 7) -> dict:
    """Predicted latency of a search's winner and, where the table was measured (same machine and
    settings), its latency timed for real with the profile's protocol.

    Args:
        genotype: the network.
        budget: the ``problem.Budget`` holding ``latency`` and ``latency_table``.
        timed: time it (else only predict; ``not_timed`` says why).
        rounds: interleaved timing rounds.

    Returns:
        ``{"budget", "predicted", "measured", "noise", "load", "clock", "table", "device", "settings"}``;
        ``measured`` is ``None`` with a ``not_timed`` reason when the table is another machine's.
    """
    model = budget.latency_model()
    table = model.table
    rec = {"budget": budget.latency, "predicted": model.predict(genotype), "table": budget.latency_table,
           "device": table.device.get("name"), "settings": table.settings.to_dict(), "measured": None}
    if not timed:
        rec["not_timed"] = "--no-build"
        return rec
    try:
        table.check_host(fingerprint(table.settings))
    except LatencyTableError as exc:
        rec["not_timed"] = str(exc)
        return rec
    res = measure_networks([genotype], table.settings, Timing(rounds=rounds))[0]
    rec.update(measured=res["seconds"], noise=res["noise"], load=res["load"], clock=res["clock"])
    return rec
