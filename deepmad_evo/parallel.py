"""The one process pool of deepmad_evo: independent tasks on worker processes that never outlive the run.

Search chains and Pareto budgets both run here. ``run_tasks(fn, tasks, jobs=…)`` calls
``fn(*task, emit)`` for every task — in this process when ``jobs <= 1``, otherwise on ``jobs``
worker processes — relays what the tasks ``emit`` (progress) to a callback in this process, and
returns the results in task order, so the number of processes never changes a result.

Why not ``concurrent.futures.ProcessPoolExecutor``: stopping it means waiting for running tasks or
reaching into its private process table. Here the pool owns its ``Process`` objects, so:

- Ctrl-C / SIGTERM / any error in the parent stops the workers at once (SIGTERM, then SIGKILL
  after a second); finished tasks have already been handed to ``on_done``.
- Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; stopping is the
  parent's job, and a worker traceback per process is noise).
- A worker dies with its parent even when the parent is SIGKILLed: it asks the kernel for
  ``PR_SET_PDEATHSIG`` (Linux) and a watcher thread also exits when the parent's sentinel closes
  or ``os.getppid()`` changes.
- A worker's exception is re-raised in the parent as itself (a ``ValueError`` stays a
  ``ValueError``), with the worker's traceback attached as ``exc.worker_traceback``.

Start method: ``fork`` when the parent has a single thread (cheapest, no ``__main__`` guard
needed); otherwise — e.g. under a rich progress bar, whose refresh thread may hold a lock at fork
time — ``forkserver`` (``spawn`` where that is missing) with ``preload`` imported once in the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import traceback
from queue import Empty
from typing import Any, Callable, Sequence

Emit = Callable[[Any], None]

# Seconds a worker gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE = 1.0
_POLL = 0.05


class WorkerDied(RuntimeError):
    """A worker process ended without returning its task (killed, out of memory, crashed)."""


def default_jobs() -> int:
    """The usable cores of this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def context(preload: Sequence[str] = ()):
    """The multiprocessing context the pool uses now (see the module docstring)."""
    methods = mp.get_all_start_methods()
    if not _other_threads() and "fork" in methods:
        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")


def _other_threads() -> list:
    """Threads besides this one that could hold a lock at fork time.

    The feeder threads of a finished pool's queues (``QueueFeederThread``, closed and cancelled by
    ``run_tasks``) do not count: they only flush a queue nobody reads any more, which a forked
    child never touches. Counting them made every pool after the first in a process (a search's
    chains, then its finishing tasks) use ``forkserver``, which needs a ``__main__`` guard in the
    caller's script.
    """
    return [t for t in threading.enumerate()
            if t is not threading.current_thread() and t.name != "QueueFeederThread"]


def run_tasks(fn: Callable, tasks: Sequence[tuple], *, jobs: int, emit: Emit | None = None,
              on_done: Callable[[int, Any], None] | None = None, preload: Sequence[str] = ()) -> list:
    """Run ``fn(*task, emit)`` for every task; return the results in task order.

    Args:
        fn: a module-level function (it is pickled by reference for the workers).
        tasks: argument tuples; handed to workers in this order (put the longest first).
        jobs: worker processes; ``<= 1`` (or a single task) runs everything in this process.
        emit: called in this process with whatever a task passes to its ``emit`` argument.
        on_done: called in this process as ``on_done(index, result)`` the moment a task finishes.
        preload: modules the forkserver imports once (speeds up worker start).

    Raises:
        Whatever a task raised (the first one to fail; the other workers are stopped), or
        ``WorkerDied`` when a worker vanished. KeyboardInterrupt / SystemExit in this process stop
        every worker before they propagate.
    """
    emit = emit or (lambda message: None)
    on_done = on_done or (lambda index, result: None)
    tasks = list(tasks)
    results: list = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = fn(*task, emit)
            on_done(i, results[i])
        return results

    ctx = context(preload)
    todo, done = ctx.Queue(), ctx.Queue()
    for i, task in enumerate(tasks):
        todo.put((i, task))
    n = min(jobs, len(tasks))
    for _ in range(n):
        todo.put(None)
    workers = []
    try:
        # Children start with Ctrl-C / SIGTERM blocked (a terminal's Ctrl-C reaches the whole group: a
        # forkserver or worker hit while still importing would print a traceback); each worker
        # unblocks them once its own handlers are in place. This process gets them when unblocked.
        with _signals_held():
            for k in range(n):
                w = ctx.Process(target=_worker, args=(fn, todo, done, os.getpid()), daemon=True,
                                name=f"deepmad-evo-worker-{k}")
                w.start()
                workers.append(w)
        remaining = len(tasks)
        while remaining:
            try:
                message = done.get(timeout=_POLL)
            except Empty:
                _check_alive(workers, done)
                continue
            kind = message[0]
            if kind == "emit":
                emit(message[1])
            elif kind == "done":
                results[message[1]] = message[2]
                remaining -= 1
                on_done(message[1], message[2])
            else:  # "error"
                raise _rebuild(*message[1:])
        return results
    finally:
        _stop(workers)
        for q in (todo, done):
            q.close()
            q.cancel_join_thread()  # never block this process's exit on a pipe nobody reads any more


def _check_alive(workers, done) -> None:
    dead = [w for w in workers if w.exitcode not in (None, 0)]
    if dead and done.empty():
        w = dead[0]
        how = f"signal {-w.exitcode}" if w.exitcode < 0 else f"exit status {w.exitcode}"
        hint = " (killed: out of memory?)" if w.exitcode == -signal.SIGKILL else ""
        raise WorkerDied(f"worker process {w.pid} ended with {how}{hint} before returning its task")


def _stop(workers) -> None:
    """SIGTERM every live worker, SIGKILL what is left after the grace period, reap all of them."""
    # A second Ctrl-C while tearing down must not interrupt the teardown (and leave workers behind).
    old = _ignore_sigint()
    try:
        for w in workers:
            if w.is_alive():
                w.terminate()
        for w in workers:
            w.join(TERMINATE_GRACE)
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join()
    finally:
        _restore_sigint(old)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C / SIGTERM while workers start, then act on them.

    An interruption inside ``Process.start`` would leave a child this process has no handle on (it
    then crashes unpickling a queue whose semaphores are gone). So the handlers only record the
    signal here, and the first one is handed to the previous handler afterwards. The children start
    with both signals blocked (``_worker`` unblocks them once its handlers are in place), so a
    forkserver or worker still importing is not hit by a terminal's Ctrl-C either.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in _STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


def _ignore_sigint():
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def _restore_sigint(old) -> None:
    if old is not None:
        signal.signal(signal.SIGINT, old)


def _rebuild(exc_bytes, type_name: str, text: str, tb: str) -> BaseException:
    import pickle

    try:
        exc = pickle.loads(exc_bytes) if exc_bytes is not None else None
    except Exception:
        exc = None
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"{type_name} in a worker process: {text}")
    exc.worker_traceback = tb
    return exc


# ---------------------------------------------------------------- worker side

def _worker(fn, todo, done, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def exit_on_sigterm(signum, frame):
        # Stopped by the parent: unwind (``finally`` blocks remove temp files) and exit without
        # waiting to flush messages nobody reads any more.
        done.cancel_join_thread()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def emit(message):
        done.put(("emit", message))

    while True:
        item = todo.get()
        if item is None:
            return
        index, task = item
        try:
            result = fn(*task, emit)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            done.put(("error", *_pack(exc)))
            return
        done.put(("done", index, result))


def _pack(exc: BaseException) -> tuple:
    import pickle

    tb = "".join(traceback.format_exception(exc))
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:
        data = None
    return data, type(exc).__name__, str(exc)[:500], tb


def _die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` dies, however it dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            # Fires when the process that forked us exits: the parent (fork) or the forkserver,
            # which itself exits as soon as the parent's end of its pipe closes.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = mp.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    ppid = os.getppid()  # the parent (fork) or the forkserver; it changes when that one exits

    def watch():
        from multiprocessing.connection import wait

        while True:
            if os.getppid() != ppid or not _alive(parent_pid):
                os._exit(1)
            if sentinel is not None and wait([sentinel], timeout=0.5):
                os._exit(1)
            elif sentinel is None:
                threading.Event().wait(0.5)

    if not _alive(parent_pid):
        os._exit(1)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
