"""Latency tables: per-op timings measured on one device with one set of settings, as versioned JSON.

A table (``deepmad-evo/latency-table/1``) records where and how it was measured — the device
(kind, name, architecture, cores), the settings (batch, precision, threads, channels-last), the
library versions, the timing protocol — plus one entry per timed op (``ops.py``) and a few timed
whole networks that calibrate the per-network overhead. Every entry keeps the median seconds, a
noise estimate (interquartile range / median of the interleaved repeats) and the 1-minute load
average at the time, so a noisy table shows itself. Reading validates everything at the
boundary and raises ``LatencyTableError`` naming the field, the value and the expectation.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..limits import MAX_TABLE_BYTES
from .ops import OP_KINDS

FORMAT = "deepmad-evo/latency-table/1"
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")

# Cell key: (op, k, s, r, extra, c_a, c_b).
OP_FIELDS = ("op", "k", "s", "r", "extra", "c_a", "c_b", "seconds", "noise", "load")


class LatencyTableError(ValueError):
    """A latency table is missing, corrupt, or was measured elsewhere / with other settings."""


@dataclass(frozen=True)
class Settings:
    """How ops are run when timed; a table is valid only for these."""

    device: str = "cpu"
    batch: int = 1
    precision: str = "fp32"
    threads: int = 1
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise LatencyTableError(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise LatencyTableError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                raise LatencyTableError(f"{name}: expected an integer in [1, 4096], got {v!r}")
        if not isinstance(self.channels_last, bool):
            raise LatencyTableError(f"channels_last: expected true or false, got {self.channels_last!r}")

    def to_dict(self) -> dict:
        return {"device": self.device, "batch": self.batch, "precision": self.precision, "threads": self.threads,
                "channels_last": self.channels_last}

    def describe(self) -> str:
        return (f"{self.device} batch {self.batch} {self.precision} {self.threads} thread"
                f"{'s' if self.threads > 1 else ''}{' channels-last' if self.channels_last else ''}")


def cpu_name() -> str:
    """The CPU model as the OS reports it (no torch needed)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint(device: str, device_name: str | None = None) -> dict:
    """What identifies "this machine" for a table: device kind and name, architecture, logical cores.

    ``device_name`` is the GPU's name for ``cuda`` (the caller asks torch); the CPU's otherwise.
    """
    return {"kind": device, "name": device_name if device_name is not None else cpu_name(),
            "arch": platform.machine(), "cores": os.cpu_count() or 1}


@dataclass
class LatencyTable:
    """A table in memory: metadata plus op and network entries (plain Python values)."""

    device: dict
    settings: Settings
    versions: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    presets: list = field(default_factory=list)
    ops: dict = field(default_factory=dict)  # cell key -> {"seconds", "noise", "load"}
    networks: list = field(default_factory=list)  # {"text", "seconds", "noise", "load", "role"}
    profile_seconds: float = 0.0
    created: str = ""

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "device": self.device, "settings": self.settings.to_dict(), "versions": self.versions,
            "timing": self.timing, "presets": list(self.presets), "created": self.created,
            "profile_seconds": self.profile_seconds,
            "op_fields": list(OP_FIELDS),
            "ops": [[*key, v["seconds"], v["noise"], v["load"]] for key, v in sorted(self.ops.items(), key=_order)],
            "networks": self.networks,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename), so an interrupted profile leaves the last good table."""
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=0, separators=(",", ":")) + "\n")

    def check_host(self, fingerprint: Mapping, settings: Settings | None = None) -> None:
        """Raise ``LatencyTableError`` unless the table was measured on ``fingerprint`` (and with ``settings``)."""
        for key in ("kind", "name", "arch", "cores"):
            if self.device.get(key) != fingerprint.get(key):
                raise LatencyTableError(
                    f"latency table: measured on {self.device.get('kind')} {self.device.get('name')!r} "
                    f"({self.device.get('arch')}, {self.device.get('cores')} cores), this is {fingerprint.get('kind')} "
                    f"{fingerprint.get('name')!r} ({fingerprint.get('arch')}, {fingerprint.get('cores')} cores); "
                    "expected a table of this machine (profile here, or --force)")
        if settings is not None and settings != self.settings:
            raise LatencyTableError(f"latency table: measured with {self.settings.describe()}, asked for "
                                    f"{settings.describe()}; expected the same settings (another --out, or --force)")

    @property
    def noise(self) -> float:
        """Median relative noise of the op entries (0 when empty)."""
        values = sorted(v["noise"] for v in self.ops.values())
        return values[len(values) // 2] if values else 0.0


def _order(item):
    key = item[0]
    return tuple(str(x) if isinstance(x, str) else f"{x:012d}" for x in key)


def _need(data: Mapping, key: str, where: str):
    if key not in data:
        raise LatencyTableError(f"latency table: {where}{key}: missing")
    return data[key]


def _finite(v: Any, where: str, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise LatencyTableError(f"latency table: {where}: expected a finite {'positive' if positive else 'non-negative'} "
                                f"number, got {v!r}")
    return float(v)


def _count(v: Any, where: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise LatencyTableError(f"latency table: {where}: expected an integer >= {minimum}, got {v!r}")
    return v


def table_from_dict(data: Any, source: str = "latency table") -> LatencyTable:
    """Validate a parsed table; raise ``LatencyTableError`` on anything unexpected."""
    if not isinstance(data, Mapping):
        raise LatencyTableError(f"{source}: expected a JSON object, got {type(data).__name__}")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise LatencyTableError(f"{source}: format: expected {FORMAT!r}, got {fmt!r}")
    device = _need(data, "device", "")
    if not isinstance(device, Mapping) or device.get("kind") not in DEVICES:
        raise LatencyTableError(f"{source}: device: expected an object with kind cpu or cuda, got {device!r}")
    s = _need(data, "settings", "")
    if not isinstance(s, Mapping):
        raise LatencyTableError(f"{source}: settings: expected an object, got {s!r}")
    try:
        settings = Settings(**{k: s[k] for k in ("device", "batch", "precision", "threads", "channels_last")})
    except KeyError as exc:
        raise LatencyTableError(f"{source}: settings.{exc.args[0]}: missing") from None
    except LatencyTableError as exc:
        raise LatencyTableError(f"{source}: settings.{exc}") from None
    if settings.device != device["kind"]:
        raise LatencyTableError(f"{source}: settings.device: {settings.device!r} differs from device.kind {device['kind']!r}")
    if list(data.get("op_fields", OP_FIELDS)) != list(OP_FIELDS):
        raise LatencyTableError(f"{source}: op_fields: expected {list(OP_FIELDS)}, got {data.get('op_fields')!r}")
    rows = _need(data, "ops", "")
    if not isinstance(rows, list):
        raise LatencyTableError(f"{source}: ops: expected a list, got {type(rows).__name__}")
    ops = {}
    for i, row in enumerate(rows):
        where = f"ops[{i}]"
        if not isinstance(row, list) or len(row) != len(OP_FIELDS):
            raise LatencyTableError(f"{source}: {where}: expected a list of {len(OP_FIELDS)} values "
                                    f"({', '.join(OP_FIELDS)}), got {row!r}")
        op, k, st, r, extra, c_a, c_b, sec, noise, load = row
        if op not in OP_KINDS:
            raise LatencyTableError(f"{source}: {where}.op: expected one of {', '.join(OP_KINDS)}, got {op!r}")
        if not isinstance(extra, (str, int)) or isinstance(extra, bool):
            raise LatencyTableError(f"{source}: {where}.extra: expected a string or an integer, got {extra!r}")
        key = (op, _count(k, f"{where}.k"), _count(st, f"{where}.s", 1), _count(r, f"{where}.r", 1), extra,
               _count(c_a, f"{where}.c_a", 1), _count(c_b, f"{where}.c_b"))
        if key in ops:
            raise LatencyTableError(f"{source}: {where}: duplicate entry {key}")
        ops[key] = {"seconds": _finite(sec, f"{where}.seconds", positive=True), "noise": _finite(noise, f"{where}.noise"),
                    "load": _finite(load, f"{where}.load")}
    nets = data.get("networks", [])
    if not isinstance(nets, list):
        raise LatencyTableError(f"{source}: networks: expected a list, got {type(nets).__name__}")
    networks = []
    for i, n in enumerate(nets):
        if not isinstance(n, Mapping) or not isinstance(n.get("text"), str):
            raise LatencyTableError(f"{source}: networks[{i}]: expected an object with a genotype 'text', got {n!r}")
        networks.append({"text": n["text"], "seconds": _finite(n.get("seconds"), f"networks[{i}].seconds", True),
                         "noise": _finite(n.get("noise"), f"networks[{i}].noise"),
                         "load": _finite(n.get("load"), f"networks[{i}].load"), "role": str(n.get("role", "calibration"))})
    presets = data.get("presets", [])
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise LatencyTableError(f"{source}: presets: expected a list of names, got {presets!r}")
    return LatencyTable(device=dict(device), settings=settings, versions=dict(data.get("versions") or {}),
                        timing=dict(data.get("timing") or {}), presets=list(presets), ops=ops, networks=networks,
                        profile_seconds=_finite(data.get("profile_seconds", 0.0), "profile_seconds"),
                        created=str(data.get("created", "")))


def read_table_text(path: str | os.PathLike) -> str:
    """The text of a table file, read through the project's bounded reader (``io.read_text``).

    Raises:
        LatencyTableError: missing, a directory, unreadable, binary, not UTF-8, or over ``MAX_TABLE_BYTES``.
    """
    from ..io import read_text

    path = Path(path)
    if not path.exists():
        raise LatencyTableError(f"--latency-table: {str(path)!r} does not exist; expected a table written by "
                                "`run.py profile`")
    try:
        return read_text(path, "--latency-table", MAX_TABLE_BYTES)
    except ValueError as exc:
        raise LatencyTableError(str(exc)) from None


def table_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a table file's text (bounded read): a resumed or re-measured table changes it."""
    import hashlib

    return hashlib.sha1(read_table_text(path).encode()).hexdigest()


def load_table(path: str | os.PathLike) -> LatencyTable:
    """Read and validate a table file (bounded in size and nesting, strict JSON).

    Raises:
        LatencyTableError: missing, unreadable, too large, not JSON, or any field invalid.
    """
    from ..io import loads_json

    text = read_table_text(path)
    where = f"latency table {str(path)!r}"
    try:
        data = loads_json(text, where)
    except ValueError as exc:
        raise LatencyTableError(str(exc)) from None
    return table_from_dict(data, where)


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def parse_time(text: Any, field: str) -> float:
    """``5ms``, ``0.2s``, ``750us`` → seconds.

    Raises:
        LatencyTableError: naming ``field`` when the text is not a positive time with a unit.
    """
    import re

    m = re.match(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs)\s*$", str(text))
    value = float(m.group(1)) * _TIME_UNITS[m.group(2)] if m else float("nan")
    if isinstance(text, bool) or not m or not math.isfinite(value) or value <= 0:
        raise LatencyTableError(f"{field}: expected a positive time with a unit (e.g. 5ms, 0.2s, 750us), got {text!r}")
    return value


def format_time(seconds: float | None) -> str:
    """Seconds as a short display string: 0.0123 → '12.3 ms'."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"
