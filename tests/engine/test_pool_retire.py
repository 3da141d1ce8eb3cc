"""One-shot workers: ``ProcessPool.run(..., retire=True)`` ends the worker after that call.

The call returns once the process has exited (its states torn down, a hosted
state's host finished); the next call gets a fresh process; a retiring worker
counts against ``max_workers``, so a one-shot pool never runs more processes
than that."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Callable

import psutil
import pytest

from executor.engine import WorkerState
from executor.engine.backend.process import ProcessPool

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks a zygote")]


def host_until_dropped(marker: str, serve: Callable[..., bool]) -> None:
    """A hosted state that writes ``marker`` after ``serve`` returned (its cleanup)."""
    serve(os.getpid())
    Path(marker).write_text("cleaned up")


def pid_of(value: int) -> int:
    return os.getpid()


def test_a_retired_worker_has_ended_when_its_call_returns_and_the_next_call_gets_a_fresh_one(tmp_path: Path) -> None:
    async def main() -> None:
        pool = ProcessPool(1, asyncio.get_running_loop())
        try:
            pids = []
            for n in range(3):
                marker = tmp_path / f"cleaned-{n}"
                state = WorkerState(host=lambda serve, marker=str(marker): host_until_dropped(marker, serve))
                pid = await pool.run(pid_of, (), {}, state=state, retire=True)
                assert marker.read_text() == "cleaned up"  # the host ran its cleanup before the call returned
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
                assert pool.pids == []
                pids.append(pid)
            assert len(set(pids)) == 3
        finally:
            pool.shutdown()

    asyncio.run(main())


def first_has_exited(path: str) -> bool:
    """In the next worker: the retired worker (its pid written by its host's cleanup) no longer exists."""
    return not psutil.pid_exists(int(Path(path).read_text()))


def test_a_retiring_worker_counts_against_max_workers(tmp_path: Path) -> None:
    record = tmp_path / "first"

    def cleanup_then_exit(serve: Callable[..., bool]) -> None:
        serve(None)
        record.write_text(str(os.getpid()))

    async def main() -> None:
        pool = ProcessPool(1, asyncio.get_running_loop())
        try:
            first = pool.run(pid_of, (), {}, state=WorkerState(host=cleanup_then_exit), retire=True)
            second = pool.run(first_has_exited, (str(record),), {})  # waits: one process at a time
            first_pid, gone = await asyncio.gather(first, second)
            assert record.read_text() == str(first_pid)
            assert gone
        finally:
            pool.shutdown()

    asyncio.run(main())
