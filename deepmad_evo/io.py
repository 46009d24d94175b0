"""Files and JSON: atomic writes (temp file + fsync + rename), bounded reads, strict JSON and the conversions
every record uses."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .limits import MAX_FILE_BYTES, MAX_JSON_DEPTH, LimitError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside ``path``; on success it is fsynced and renamed over ``path``.

    On any exception the temp file is removed and an existing ``path`` is left untouched. The file
    gets the mode a plain ``open()`` would give it (``mkstemp`` alone creates 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name, so ``clean_stale_temps`` can tell a killed writer's leftover
    # from a file being written right now.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == tmp:
            # Name the file the user asked for (disk full while writing it), not our temp file.
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temp files that ``atomic_path`` writers killed mid-write (SIGKILL) left in ``folder``.

    Only files whose writer process no longer exists are removed. Returns the removed paths.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename)."""
    atomic_write_bytes(path, text.encode())


def jsonable(value: Any) -> Any:
    """``value`` as JSON would read it back: tuples become lists, mapping keys strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def json_number(value) -> int | float:
    """A JSON number: an int when the value is integral (exact torch-convention counts), else a float."""
    v = float(value)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


# ---------------------------------------------------------------- bounded reads, strict JSON

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


def nan_to_none(value: Any) -> Any:
    """A copy of a JSON-like value with every NaN / ±inf float replaced by ``None`` (strict JSON has none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value
