"""A submit larger than one registration chunk: every job runs once, in submit order, and joins see them all.

The plain calls of a large submit run chunk by chunk while the submit goes on
(their jobs are still in the CPU cache); a ``join()`` that waits meanwhile must
not take the gap between two chunks for an idle engine.
"""

from __future__ import annotations

import asyncio
import threading
import typing as T
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine._submitting import CHUNK as _CHUNK

pytestmark = pytest.mark.timeout(60)


def test_a_large_submit_runs_every_job_once_in_order(tmp_path: Path) -> None:
    order: list[int] = []
    n = 3 * _CHUNK + 7
    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"), max_jobs=None)) as engine:
        jobs = [LocalJob(order.append, args=(i,)) for i in range(n)]
        engine.submit(*jobs)
        assert engine.wait(timeout=30)
        assert order == list(range(n))
        assert all(job.status == "done" for job in jobs)
        assert len(engine.jobs.done) == n


@pytest.mark.asyncio
async def test_a_join_waiting_during_a_large_submit_sees_the_whole_submit(tmp_path: Path) -> None:
    finished: list[int] = []
    n = 2 * _CHUNK + 1
    gate = threading.Event()
    release = asyncio.Event()

    async def last_job() -> str:
        await release.wait()
        return "last"

    # no job limit: each chunk runs in full, so the engine is empty between chunks
    async with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"), max_jobs=None)) as engine:
        held = ThreadJob(gate.wait, args=(30,))
        await engine.submit_async(held)
        joined = asyncio.ensure_future(engine.join())
        await asyncio.sleep(0)  # the join registers while ``held`` runs
        assert not joined.done()
        # the first job of the submit ends ``held``: after the first chunk no job is active for a moment,
        # yet the join must wait for the rest of the submit (its last job waits for ``release``)
        last = LocalJob(last_job)
        try:
            await engine.submit_async(LocalJob(engine.cancel, args=(held,)),
                                      *[LocalJob(finished.append, args=(i,)) for i in range(n)], last)
            assert held.status == "cancelled"
            early, _ = await asyncio.wait({joined}, timeout=0.2)
            assert not early, "join() returned while a job of the submit was still running"
            release.set()
            await asyncio.wait_for(joined, 30)
            assert finished == list(range(n)) and last.result() == "last"
        finally:
            gate.set()


SHARED_KEY_LIMIT = 30
"""CPython keeps instances' dicts compact (a shared key table per class) up to this many attribute names."""


def test_jobs_keep_their_instance_attributes_under_the_shared_key_limit(tmp_path: Path) -> None:
    def boom() -> None:
        raise ValueError("boom")

    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        jobs = [LocalJob(abs, args=(-1,)), ThreadJob(abs, args=(-2,)), ProcessJob(abs, args=(-3,)),
                LocalJob(boom, retries=1), ThreadJob(boom)]
        engine.submit(*jobs)
        assert engine.wait(timeout=60)
        for job in jobs[:3]:
            engine.submit(job)  # a rerun sets no new attributes either
        assert engine.wait(timeout=60)
    assert [job.status for job in jobs] == ["done"] * 3 + ["failed"] * 2
    for cls in {type(job) for job in jobs}:
        names = set().union(*(vars(job) for job in jobs if type(job) is cls))
        assert len(names) < SHARED_KEY_LIMIT, (cls.__name__, sorted(names))
