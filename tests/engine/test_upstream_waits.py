"""Waiting with a timeout, and ``select_jobs``, behave as in executor-engine 0.3.3.

Upstream's ``wait_job``, ``join`` and ``Job.join`` return quietly when the
timeout passes (``wait_job`` then returns None); ``wait``/``wait_async`` take
``select_jobs(jobs_manager) -> jobs`` and wait until it picks no active job.
Ours also takes a per-job predicate there.
"""

from __future__ import annotations

import asyncio
import threading
import typing as T
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, ThreadJob
from executor.engine.manager import Jobs

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def engine(tmp_path: Path) -> T.Iterator[Engine]:
    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


def on_loop(engine: Engine, coro: T.Coroutine[T.Any, T.Any, T.Any]) -> T.Any:
    return asyncio.run_coroutine_threadsafe(coro, engine.loop).result(30)


def held_job(engine: Engine) -> tuple[ThreadJob, threading.Event]:
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,))
    engine.submit(job)
    return job, gate


def test_wait_job_join_and_job_join_return_quietly_on_timeout(engine: Engine) -> None:
    job, gate = held_job(engine)
    assert engine.wait_job(job, timeout=0.05) is None
    assert on_loop(engine, job.join(timeout=0.05)) is None
    assert on_loop(engine, engine.join(timeout=0.05)) is None
    assert on_loop(engine, engine.join([job], timeout=0.05)) is None
    job.wait(timeout=0.05)
    assert job.status == "running"
    gate.set()
    assert engine.wait_job(job, timeout=30) is True
    assert job.status == "done"


def test_wait_job_of_a_failed_job_returns_none(engine: Engine) -> None:
    job = ThreadJob(lambda: 1 / 0)
    engine.submit(job)
    assert engine.wait_job(job, timeout=30) is None
    assert job.status == "failed"


def test_wait_takes_upstreams_select_jobs_on_the_jobs_manager(engine: Engine) -> None:
    held, gate = held_job(engine)
    seen: list[object] = []

    def pending_only(jobs: Jobs) -> T.List[T.Any]:
        seen.append(jobs)
        return jobs.pending.values()

    # upstream waits until the selection is empty: the running job is not pending
    assert engine.wait(timeout=30, select_jobs=pending_only) is True
    assert seen and all(s is engine.jobs for s in seen)
    assert held.status == "running"
    assert engine.wait(timeout=0.05, select_jobs=lambda jobs: jobs.running.values()) is False
    gate.set()
    assert engine.wait(timeout=30, select_jobs=lambda jobs: jobs.running.values()) is True
    assert held.status == "done"


def test_wait_takes_a_per_job_predicate(engine: Engine) -> None:
    held, gate = held_job(engine)
    quick = ThreadJob(lambda: 1, name="quick")
    engine.submit(quick)
    assert engine.wait(timeout=30, select_jobs=lambda job: job.name == "quick") is True
    assert quick.status == "done" and held.status == "running"
    assert engine.wait(timeout=0.05, select_jobs=lambda job: job is held) is False
    gate.set()
    assert engine.wait(timeout=30, select_jobs=lambda job: job is held) is True


def test_wait_async_shares_the_selection_of_wait(engine: Engine) -> None:
    held, gate = held_job(engine)
    assert on_loop(engine, engine.wait_async(timeout=0.05, select_jobs=lambda jobs: jobs.running.values())) is False
    assert on_loop(engine, engine.wait_async(timeout=0.05, select_jobs=lambda job: job is held)) is False
    gate.set()
    assert on_loop(engine, engine.wait_async(timeout=30, select_jobs=lambda jobs: jobs.running.values())) is True
    assert engine._status_listeners == []  # the waits left no listener behind
