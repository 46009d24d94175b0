"""The one process pool: results in task order for any number of processes, errors come back as themselves,
an interruption in the parent stops every worker at once, and a vanished worker is an error, not a hang."""

from __future__ import annotations

import os
import signal
import time

import pytest

from deepmad_evo.parallel import WorkerDied, run_tasks


def square_after(x, pause, emit):
    emit(("started", x))
    time.sleep(pause)
    return x * x


def fail_on(x, bad, emit):
    if x == bad:
        raise ValueError(f"task {x}: bad input")
    return x


def kill_self(x, emit):
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def report_pid(x, emit):
    emit(os.getpid())
    time.sleep(60)
    return x


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_results_in_task_order_whatever_the_processes(jobs):
    done, messages = [], []
    tasks = [(x, 0.05 * (4 - x)) for x in range(4)]
    assert run_tasks(square_after, tasks, jobs=jobs, emit=messages.append,
                     on_done=lambda i, r: done.append(i)) == [0, 1, 4, 9]
    assert sorted(done) == [0, 1, 2, 3] and sorted(messages) == [("started", x) for x in range(4)]


def test_a_task_error_comes_back_as_itself_with_the_worker_traceback():
    with pytest.raises(ValueError, match=r"^task 2: bad input$") as info:
        run_tasks(fail_on, [(x, 2) for x in range(4)], jobs=2)
    assert "fail_on" in info.value.worker_traceback


def test_a_killed_worker_is_an_error_not_a_hang():
    with pytest.raises(WorkerDied, match=r"signal 9"):
        run_tasks(kill_self, [(x,) for x in range(3)], jobs=2)


def test_an_interruption_in_the_parent_stops_every_worker_at_once():
    pids = []

    def emit(pid):
        pids.append(pid)
        if len(pids) == 2:
            raise KeyboardInterrupt

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(report_pid, [(x,) for x in range(4)], jobs=2, emit=emit)
    assert time.perf_counter() - t0 < 20  # the tasks would sleep 60 s each
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_finished_pools_queue_feeder_does_not_force_forkserver():
    """A search runs two pools (chains, then its finishing tasks). A lingering queue feeder thread
    of the first must not push the second onto forkserver, which re-imports an unguarded
    ``__main__`` script and fails ("An attempt has been made to start a new process before ...");
    any other thread (a progress bar's refresh thread) still must."""
    import threading

    from deepmad_evo.parallel import _other_threads

    for name, counted in (("QueueFeederThread", False), ("rich-refresh", True)):
        release = threading.Event()
        thread = threading.Thread(target=release.wait, name=name, daemon=True)
        thread.start()
        try:
            assert (thread in _other_threads()) is counted, name
        finally:
            release.set()
            thread.join()
