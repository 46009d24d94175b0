"""Input limits: what a genotype, config or state file may hold before anything large is allocated.

Every reader of user input goes through these checks so that a hostile or broken input ends in
one ``ValueError`` naming the field, the value (shortened) and the limit, never in a traceback,
unbounded memory or a hang. Limits are sized for networks that exist (channel widths of a few
thousand, image sides of a few thousand pixels, depths of a few hundred blocks).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

# Files read whole: genotypes (JSON, text form, TinyNAS structures), TOML configs, run records.
MAX_FILE_BYTES = 8 * 2**20
# Nesting of JSON / literal containers (a genotype needs 3 levels, a run record about 6).
MAX_JSON_DEPTH = 64
# Network sizes a real CNN can have.
MAX_CHANNELS = 16384
MAX_IMAGE_SIDE = 8192
MAX_DEPTH = 1024  # blocks per stage
MAX_KERNEL = 31
MAX_STAGES = 64
MAX_CLASSES = 1_000_000
MAX_IN_CHANNELS = 1024
# Value grids of a search space (channels, stem channels, expansions, kernels).
MAX_GRID = 4096
MAX_EXPANSION = 64.0
# Search effort: one population is pop_size × n_var numbers per chain.
MAX_POP_SIZE = 100_000
MAX_COUNT = 1_000_000  # generations, restarts, perturbations, …
MAX_CHAINS = 1024
MAX_SEED = 2**32 - 1
# Longest value quoted back in a message.
SHOWN = 80


class LimitError(ValueError):
    """An input is outside what the tool accepts."""


def shown(value: Any, limit: int = SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, so no message echoes a whole file."""
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a huge string would itself be huge
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finite(value: Any, field: str) -> float:
    """``value`` as a finite float, or a ``LimitError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.number) and not isinstance(value, np.bool_):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise LimitError(f"{field}: expected a finite number, got {shown(value)}") from None
    try:
        f = float(value)
    except OverflowError:
        raise LimitError(f"{field}: expected a finite number, got {shown(value)}") from None
    if not math.isfinite(f):
        raise LimitError(f"{field}: expected a finite number, got {f}")
    return f


def int_in(value: Any, field: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high], or a ``LimitError`` naming ``field`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitError(f"{field}: expected an integer in [{low}, {high}], got {shown(value)}")
    if not low <= value <= high:
        raise LimitError(f"{field}: expected an integer in [{low}, {high}], got {shown(value)}")
    return value


def seed(value: Any, field: str = "--seed") -> int:
    """A seed: an integer in [0, 2**32 - 1]."""
    return int_in(value, field, 0, MAX_SEED)


def read_text(path: str | os.PathLike, field: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a small file; refuses large, binary or unreadable files with one line.

    Args:
        path: the file.
        field: what the file is (named in errors, e.g. ``--config`` or the path itself).
        limit: largest size read, in bytes (checked before reading).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise LimitError(f"{field}: {path} is {size:,} bytes; expected a file of at most {limit:,} bytes")
            data = f.read(limit + 1)
    except IsADirectoryError:
        raise LimitError(f"{field}: {path} is a directory; expected a file") from None
    except OSError as exc:
        raise LimitError(f"{field}: cannot read {path} ({exc.strerror or exc})") from None
    if len(data) > limit:  # a file that grew, or a pipe
        raise LimitError(f"{field}: {path} holds more than {limit:,} bytes; expected a smaller file")
    if b"\0" in data:
        raise LimitError(f"{field}: {path} is a binary file; expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LimitError(f"{field}: {path} is not UTF-8 text (bad byte at offset {exc.start})") from None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', re.S)


def nesting_depth(text: str, python: bool = False) -> int:
    """Deepest bracket nesting of JSON (or a Python literal with ``python``), strings skipped."""
    import numpy as np

    stripped = (_QUOTED if python else _STRING).sub('""', text)
    codes = np.frombuffer(stripped.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(codes, (ord("["), ord("{"), ord("("))).astype(np.int64) \
        - np.isin(codes, (ord("]"), ord("}"), ord(")"))).astype(np.int64)
    return int(np.cumsum(step).max(initial=0))


def check_depth(text: str, field: str, python: bool = False, limit: int = MAX_JSON_DEPTH) -> None:
    depth = nesting_depth(text, python)
    if depth > limit:
        raise LimitError(f"{field}: nested {depth} levels deep; expected at most {limit}")


def _no_constant(name: str):
    raise LimitError(f"JSON: {name} is not a finite number; expected finite numbers only")


def loads_json(text: str, field: str) -> Any:
    """Parse JSON text with the nesting limit; NaN / Infinity are refused (strict JSON has none).

    Raises:
        LimitError / ValueError: one line naming ``field`` and, for syntax errors, the position.
    """
    check_depth(text, field)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except LimitError as exc:
        raise LimitError(f"{field}: {str(exc)}") from None
    except json.JSONDecodeError as exc:
        raise LimitError(f"{field}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise LimitError(f"{field}: nested too deeply; expected at most {MAX_JSON_DEPTH} levels") from None


def read_json(path: str | os.PathLike, field: str | None = None, limit: int = MAX_FILE_BYTES) -> Any:
    """``loads_json(read_text(path))``: a small JSON file, checked."""
    field = field or str(path)
    return loads_json(read_text(path, field, limit), field)


def dumps_json(value: Any, **kwargs) -> str:
    """``json.dumps`` that refuses NaN / Infinity instead of writing what strict parsers reject."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError as exc:
        raise LimitError(f"JSON output: {exc}; expected finite numbers only") from None


# ---------------------------------------------------------------- argparse types (one line naming the flag)

def arg_float(text: str) -> float:
    """argparse type: a finite float (``nan`` / ``inf`` refused)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {shown(text)}")
    return value


def arg_int(low: int, high: int):
    """argparse type: an integer in [low, high]."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) < 30 else None
        except ValueError:
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {shown(text)}")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"expected an integer <= {high}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


arg_seed = arg_int(0, MAX_SEED)
arg_image_side = arg_int(1, MAX_IMAGE_SIDE)


# ---------------------------------------------------------------- output paths (checked before long work)

def check_output(path: str | os.PathLike, field: str = "--out", kind: str = "dir") -> Path:
    """Refuse an output path that cannot be written, before any long computation starts.

    Args:
        path: the directory (``kind="dir"``) or file (``kind="file"``) to be written.
        field: the flag named in the error.
        kind: ``dir`` or ``file``.

    Returns:
        ``path`` as a ``Path``. Nothing is created.
    """
    path = Path(path)
    text = shown(str(path))
    if "\0" in str(path):
        raise LimitError(f"{field}: {text} holds a NUL byte; expected a file system path")
    try:
        if path.exists() or path.is_symlink():
            if kind == "dir" and not path.is_dir():
                raise LimitError(f"{field}: {text} is a file; expected a directory (or a path to create one)")
            if kind == "file" and path.is_dir():
                raise LimitError(f"{field}: {text} is a directory; expected a file path")
            target = path if kind == "dir" else path.parent
            if not os.access(target, os.W_OK | os.X_OK) or (kind == "file" and not os.access(path, os.W_OK)):
                raise LimitError(f"{field}: {text} is not writable; expected a path you may write")
            return path
        parent = path.parent
        while not (parent.exists() or parent.is_symlink()):
            if parent == parent.parent:
                break
            parent = parent.parent
        if not parent.is_dir():
            raise LimitError(f"{field}: {text} lies below {shown(str(parent))}, which is a file; expected a directory path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise LimitError(f"{field}: cannot create {text}: {shown(str(parent))} is not writable")
    except OSError as exc:  # a name too long, a loop of links
        raise LimitError(f"{field}: {text} is not a usable path ({exc.strerror or exc})") from None
    except ValueError as exc:
        if isinstance(exc, LimitError):
            raise
        raise LimitError(f"{field}: {text} is not a usable path ({exc})") from None
    return path


def nan_to_none(value: Any) -> Any:
    """A copy of a JSON-like value with every NaN / ±inf float replaced by ``None`` (strict JSON has none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


# ---------------------------------------------------------------- memory a built network needs

def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def network_memory(genotype, batch: int = 1, training: bool = False, num_classes: int | None = None) -> int:
    """Rough upper estimate of the bytes needed to build ``genotype`` and run (or train) a batch in float32.

    Weights (×4 when training: gradients, momentum, an EMA copy) plus activations: the largest
    feature map twice for inference; every layer's output, normalised and activated, when training.
    """
    from .costs import network_costs
    from .units import expand

    net = expand(genotype)
    params = network_costs(net, "torch").params
    classes = genotype.num_classes if num_classes is None else num_classes
    params += (classes - genotype.num_classes) * (net.out_channels + 1)
    largest = stored = 0
    for u in net.units:
        area = int(u.r_in) ** 2
        for layer in u.layers:
            size = int(layer.c_out) * area
            largest = max(largest, size, int(layer.c_in) * area)
            stored += 3 * size
    activations = stored if training else 2 * largest
    return 4 * (int(params) * (4 if training else 1) + batch * activations)


def check_memory(genotype, batch: int = 1, training: bool = False, num_classes: int | None = None,
                 field: str = "genotype") -> None:
    """Refuse, before anything is allocated, a network that cannot fit in the memory available."""
    need = network_memory(genotype, batch, training, num_classes)
    have = available_memory()
    if have is not None and need > have:
        gib = 2**30
        raise LimitError(f"{field}: {'training' if training else 'building and running'} this network needs about "
                         f"{need / gib:,.1f} GiB (batch {batch}), more than the {have / gib:,.1f} GiB available; "
                         "expected a smaller network, image size or batch")
