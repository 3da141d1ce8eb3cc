"""Prefetch in the process pool: a busy worker holds the next call, starts it without a round trip,
skips it when it is cancelled before it starts, and a call queued in a worker that dies runs elsewhere.

A ``ProcessPool`` driven directly on an event loop (the engine runs one ProcessJob per worker and does
not prefetch); real worker processes, files written by the calls are the events the tests wait on."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from executor.engine.backend.process import ProcessPool
from executor.engine.job.utils import WorkerCrashedError

from _engine_helpers import pid, touch_then_wait

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks a zygote")]


def note(path: str) -> int:
    """A call that leaves a trace: writes its worker's pid to ``path``."""
    Path(path).write_text(str(os.getpid()))
    return os.getpid()


def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def wait_file(path: Path) -> None:
    """Wait (on the loop, which must keep reading replies) until ``path`` exists."""
    while not path.exists():
        await asyncio.sleep(0.005)


def run_pool(body: Callable[[ProcessPool], Awaitable[Any]], **kwargs: Any) -> Any:
    async def main() -> Any:
        pool = ProcessPool(1, asyncio.get_running_loop(), **kwargs)
        try:
            return await body(pool)
        finally:
            pool.shutdown()

    return asyncio.run(main())


def test_a_busy_worker_receives_the_next_call_before_it_finishes_and_runs_it_next(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        first = asyncio.ensure_future(pool.run(touch_then_wait, (str(tmp_path / "started"), str(tmp_path / "go")), {}))
        await wait_file(tmp_path / "started")
        second = asyncio.ensure_future(pool.run(note, (str(tmp_path / "second"),), {}))
        for _ in range(100):  # the second call is sent while the first still runs
            await asyncio.sleep(0.01)
            if len(pool._workers[0].calls) == 2:
                break
        assert len(pool._workers[0].calls) == 2
        assert not (tmp_path / "second").exists()
        (tmp_path / "go").write_text("")
        assert await first == await second  # same worker, in order
        assert (tmp_path / "second").exists()
        assert await pool.run(pid, (), {}) == await first  # the worker went back to idle

    run_pool(body, prefetch=1)


def test_without_prefetch_the_next_call_waits_in_the_engine(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        first = asyncio.ensure_future(pool.run(touch_then_wait, (str(tmp_path / "started"), str(tmp_path / "go")), {}))
        await wait_file(tmp_path / "started")
        second = asyncio.ensure_future(pool.run(note, (str(tmp_path / "second"),), {}))
        await asyncio.sleep(0.05)
        assert len(pool._workers[0].calls) == 1
        (tmp_path / "go").write_text("")
        assert await first == await second

    run_pool(body)


def test_a_queued_call_cancelled_before_it_starts_is_skipped_and_the_worker_stays(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        first = asyncio.ensure_future(pool.run(touch_then_wait, (str(tmp_path / "started"), str(tmp_path / "go")), {}))
        await wait_file(tmp_path / "started")
        second = asyncio.ensure_future(pool.run(note, (str(tmp_path / "never"),), {}))
        while len(pool._workers[0].calls) < 2:
            await asyncio.sleep(0.005)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        (tmp_path / "go").write_text("")
        worker_pid = await first
        assert await pool.run(pid, (), {}) == worker_pid  # not killed: the same worker serves on
        assert not (tmp_path / "never").exists()

    run_pool(body, prefetch=1)


def test_a_call_queued_in_a_worker_that_crashes_runs_on_its_replacement(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        first = asyncio.ensure_future(pool.run(touch_then_wait, (str(tmp_path / "started"), str(tmp_path / "go")), {}))
        await wait_file(tmp_path / "started")
        doomed = int((tmp_path / "started").read_text())
        second = asyncio.ensure_future(pool.run(note, (str(tmp_path / "second"),), {}))
        while len(pool._workers[0].calls) < 2:
            await asyncio.sleep(0.005)
        os.kill(doomed, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError) as info:
            await first
        assert info.value.signal == "SIGKILL"
        assert await second != doomed

    run_pool(body, prefetch=1)


def test_cancelling_the_running_call_reruns_the_queued_one_on_a_fresh_worker(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        first = asyncio.ensure_future(pool.run(touch_then_wait, (str(tmp_path / "started"), str(tmp_path / "go")), {}))
        await wait_file(tmp_path / "started")
        killed = int((tmp_path / "started").read_text())
        second = asyncio.ensure_future(pool.run(note, (str(tmp_path / "second"),), {}))
        while len(pool._workers[0].calls) < 2:
            await asyncio.sleep(0.005)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second != killed

    run_pool(body, prefetch=1)


def test_prefetch_goes_to_the_worker_with_the_affinity_and_a_crash_inside_a_queue_is_reported(tmp_path: Path) -> None:
    async def body(pool: ProcessPool) -> None:
        calls = [pool.run(pid, (), {}, affinity="mod") for _ in range(6)]
        pids = set(await asyncio.gather(*calls))
        assert len(pids) == 1
        results = await asyncio.gather(pool.run(crash, (), {}), pool.run(pid, (), {}), return_exceptions=True)
        assert isinstance(results[0], WorkerCrashedError)
        assert isinstance(results[1], int) and results[1] not in pids

    run_pool(body, prefetch=2)


def test_prefetch_must_not_be_negative() -> None:
    async def body() -> None:
        with pytest.raises(ValueError, match="prefetch"):
            ProcessPool(1, asyncio.get_running_loop(), prefetch=-1)

    asyncio.run(body())
