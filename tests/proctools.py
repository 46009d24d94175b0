"""Process helpers for the fault-injection tests (no psutil): process groups read from /proc."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = str(REPO / "run.py")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def wait_group_empty(pgid: int, timeout: float) -> list[int]:
    """Poll until group ``pgid`` has no live process; returns what is still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = group_members(pgid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def limited(memory_bytes: int):
    """preexec_fn: a new session (own process group) and an address-space limit."""
    def apply():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    return apply


def start_cli(*args, cwd=None, memory_bytes: int | None = None) -> subprocess.Popen:
    """The CLI in its own session (its pid is its process group id), stdout/stderr piped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, RUN, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=limited(memory_bytes) if memory_bytes else os.setsid)
