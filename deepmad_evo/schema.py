"""The one vocabulary for declarative config files: ``ConfigError``, field checkers and the TOML reader.

Both the run presets (``config.load_config``) and the training recipes (``train.load_train_config``)
are read through ``read_toml`` and validated with these checkers, so every bad value gives the
same kind of one-line message: ``<file>: <table>.<key>: expected …, got …``.
A checker is ``check(value, where) -> value`` (possibly converted) and raises ``ConfigError``.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .io import read_text
from .limits import MAX_GRID, shown

Check = Callable[[Any, str], Any]


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """An int (not a bool), at least ``minimum`` and at most ``maximum`` when given."""
    def check(v, where):
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
            expected = "an integer" if minimum is None else f"an integer >= {minimum}"
            raise ConfigError(f"{where}: expected {expected}, got {shown(v)}")
        if maximum is not None and v > maximum:
            raise ConfigError(f"{where}: expected an integer <= {maximum:,}, got {shown(v)}")
        return v
    return check


def number(low: float = -math.inf, high: float = math.inf, *, open_low: bool = False,
           open_high: bool = False) -> Check:
    """A finite int or float within the bounds, returned as a float."""
    def check(v, where):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
        if not ok:
            bounds = []
            if low > -math.inf:
                bounds.append(f"> {low:g}" if open_low else f">= {low:g}")
            if high < math.inf:
                bounds.append(f"< {high:g}" if open_high else f"<= {high:g}")
            raise ConfigError(f"{where}: expected a number{' ' + ' and '.join(bounds) if bounds else ''}, got {shown(v)}")
        return float(v)
    return check


def boolean(v, where):
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: expected true or false, got {shown(v)}")
    return v


def string(v, where):
    if not isinstance(v, str):
        raise ConfigError(f"{where}: expected a string, got {shown(v)}")
    return v


def choice(choices: Sequence[str]) -> Check:
    def check(v, where):
        if v not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {shown(v)}")
        return v
    return check


def sequence(item: Check, n: int | None = None, what: str | None = None) -> Check:
    """A non-empty list (of exactly ``n`` items when given), each checked by ``item``; returned as a tuple."""
    def check(v, where):
        if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n) or not v:
            expected = what or ("a list" if n is None else f"a list of {n} values")
            raise ConfigError(f"{where}: expected {expected}, got {shown(v)}")
        if len(v) > MAX_GRID:
            raise ConfigError(f"{where}: expected at most {MAX_GRID} values, got {len(v):,}")
        return tuple(item(x, where) for x in v)
    return check


def take(table: Any, where: str, spec: Mapping[str, Check], src: str) -> dict:
    """Check a TOML table against ``spec`` {key: checker}; unknown keys are errors; returns the present keys."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{src}: [{where}] must be a table")
    for key in table:
        if key not in spec:
            raise ConfigError(f"{src}: unknown key {where}.{key}; expected one of {', '.join(sorted(spec))}")
    return {key: check(table[key], f"{src}: {where}.{key}") for key, check in spec.items() if key in table}


def read_toml(source: str | os.PathLike, directory: Path, what: str) -> tuple[Path, dict]:
    """Read a TOML file given by path, or by preset name from ``directory`` (``r50`` → ``directory/r50.toml``).

    Args:
        source: a path or a preset name.
        directory: where the presets live.
        what: how the error calls a preset (``preset``, ``training preset``).

    Returns:
        (the file read, its parsed content).

    Raises:
        ConfigError: for a name that is neither a file nor a preset (listing the presets) or bad TOML.
    """
    path = Path(source)
    if not _is_file(path):
        named = Path(directory) / f"{source}.toml"
        if not _is_file(named):
            names = ", ".join(preset_names(directory))
            raise ConfigError(f"--config: {shown(str(source))} is neither a file nor a {what}; presets: {names}")
        path = named
    try:
        data = tomllib.loads(read_text(path, "--config"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({str(exc)[:80]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply; expected a flat TOML file") from None
    except ValueError as exc:  # too large, binary, not UTF-8, unreadable
        raise ConfigError(str(exc)) from None
    if not data:
        raise ConfigError(f"{path}: empty config; expected its tables (see configs/*.toml, e.g. a [template] table)")
    return path, data


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def preset_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.toml"))
