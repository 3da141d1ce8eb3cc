"""A cancelled running ThreadJob is abandoned: neither cancel(), stop() nor the ``with`` block waits for it.

Python threads cannot be killed.  Each job here blocks on an event that the
test sets only *after* the engine has stopped: if stopping waited for the
thread, the test would hang until pytest-timeout fails it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, ThreadJob

from _engine_helpers import add

pytestmark = pytest.mark.timeout(30)

HOLD = 120.0
"""How long a held job would block if nobody released it (far beyond the test timeout)."""


class Held:
    """A job body that reports when it started and returned, and blocks until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self) -> str:
        self.thread = threading.current_thread()
        self.started.set()
        self.release.wait(HOLD)
        self.returned.set()
        return "late"

    def finish(self) -> None:
        """Let the abandoned thread end, and check that it does."""
        self.release.set()
        assert self.returned.wait(10)
        assert self.thread is not None
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("redirect", [False, True], ids=["fast-path", "task-path"])
def test_with_block_does_not_wait_for_a_cancelled_thread_job(tmp_path: Path, redirect: bool) -> None:
    held = Held()
    with Engine(EngineSetting(cache_path=str(tmp_path))) as engine:
        job = ThreadJob(held, redirect_out_err=redirect)
        engine.submit(job)
        assert held.started.wait(10)
        engine.cancel(job)
        assert job.status == "cancelled"
    assert not held.returned.is_set()  # the block ended while the thread still runs
    held.finish()
    assert job.status == "cancelled"  # the late result is dropped


def test_stop_abandons_a_running_thread_job_without_cancel(tmp_path: Path) -> None:
    held = Held()
    engine = Engine(EngineSetting(cache_path=str(tmp_path)))
    engine.start()
    job = ThreadJob(held)
    engine.submit(job)
    assert held.started.wait(10)
    engine.stop()
    assert not held.returned.is_set()
    assert job.status == "cancelled"
    held.finish()


def test_abandoned_thread_leaves_the_pool_and_a_new_one_takes_its_place(tmp_path: Path) -> None:
    held = Held()
    with Engine(EngineSetting(cache_path=str(tmp_path), max_thread_jobs=1)) as engine:
        stuck = ThreadJob(held)
        engine.submit(stuck)
        assert held.started.wait(10)
        engine.cancel(stuck)
        after = ThreadJob(add, args=(2, 3))
        engine.submit(after)
        engine.wait_job(after, timeout=10)
        assert after.result() == 5
        assert not held.returned.is_set()
    held.finish()
