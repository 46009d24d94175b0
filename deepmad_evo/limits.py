"""Input limits: what a genotype, config or state file may hold before anything large is allocated.

Every reader of user input goes through these checks (files and JSON through ``io.read_text`` /
``io.read_json``, which apply the size and nesting limits defined here) so that a hostile or broken input ends in
one ``ValueError`` naming the field, the value (shortened) and the limit, never in a traceback,
unbounded memory or a hang. Limits are sized for networks that exist (channel widths of a few
thousand, image sides of a few thousand pixels, depths of a few hundred blocks).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

# Files read whole: genotypes (JSON, text form, TinyNAS structures), TOML configs, run records.
MAX_FILE_BYTES = 8 * 2**20
# Latency tables (``latency.table``): ~70 kB per preset profiled; every preset at batch 256 stays far below.
MAX_TABLE_BYTES = 64 * 2**20
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
