"""A condition naming a job that is not submitted (yet) makes its job wait, as in executor-engine 0.3.3.

The waiting job is released by the named job's status change (event-driven:
no timer is armed while it waits), stays pending if that job never comes,
lets ``join(timeout=...)`` return, and ends with ``cancel()``.
"""

from __future__ import annotations

import typing as T
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ThreadJob
from executor.engine.job.condition import AfterAnother, AfterOthers

from _engine_helpers import add

pytestmark = pytest.mark.timeout(60)


def pending_ids(engine: Engine) -> set[str]:
    return {job.id for job in engine.jobs.pending.values()}


def no_timer_armed(engine: Engine) -> bool:
    """True when the scheduler has no timer: waiting jobs cost nothing until an event wakes them."""
    return engine._sched.next_deadline() is None and engine._timer is None


@pytest.mark.asyncio
async def test_jobs_submitted_in_reverse_dependency_order_across_calls_run_in_order(tmp_path: Path) -> None:
    order: list[str] = []

    def step(name: str, value: int = 0) -> int:
        order.append(name)
        return value + 1

    first = LocalJob(step, args=("first",))
    second = ThreadJob(step, args=("second", first.future))  # gets first's result
    third = LocalJob(step, args=("third",), condition=AfterAnother(job_id=second.id, statuses=["done"]))
    fourth = LocalJob(step, args=("fourth",), condition=AfterOthers(job_ids=[first.id, third.id]))
    engine = Engine(EngineSetting(cache_path=str(tmp_path)))
    try:
        await engine.submit_async(fourth)
        await engine.submit_async(third)
        await engine.submit_async(second)
        assert pending_ids(engine) == {fourth.id, third.id, second.id}
        assert no_timer_armed(engine)
        await engine.submit_async(first)
        await engine.join(timeout=30)
        assert order == ["first", "second", "third", "fourth"]
        assert [j.status for j in (first, second, third, fourth)] == ["done"] * 4
        assert second.result() == 2
    finally:
        engine.stop()


@pytest.mark.asyncio
async def test_job_waiting_on_an_id_that_never_appears_stays_pending_until_cancelled(tmp_path: Path) -> None:
    engine = Engine(EngineSetting(cache_path=str(tmp_path)))
    try:
        lone = LocalJob(add, args=(1, 2), condition=AfterAnother(job_id="not_exist"))
        group = LocalJob(add, args=(3, 4), condition=AfterOthers(job_ids=["not_exist", "nor_this"], mode="any"))
        await engine.submit_async(lone, group)
        await engine.join(timeout=0.05)  # returns: a timeout is not an error
        assert lone.status == "pending" and group.status == "pending"
        assert pending_ids(engine) == {lone.id, group.id}
        assert no_timer_armed(engine)
        await engine.cancel_async(lone, group)
        assert lone.status == "cancelled" and group.status == "cancelled"
        assert len(engine.jobs.pending) == 0
        await engine.join(timeout=30)  # nothing left to wait for
    finally:
        engine.stop()


def test_sync_engine_keeps_job_pending_then_releases_it_when_the_named_job_arrives(tmp_path: Path) -> None:
    with Engine(EngineSetting(cache_path=str(tmp_path))) as engine:
        upstream = LocalJob(add, args=(1, 1))
        waiting = LocalJob(add, args=(upstream.future, 10))
        engine.submit(waiting)
        assert waiting.status == "pending"
        assert engine.wait(timeout=0.05) is False
        engine.submit(upstream)
        engine.wait_job(waiting, timeout=30)
        assert waiting.result() == 12


def test_many_jobs_wait_on_a_missing_id_without_any_timer(tmp_path: Path) -> None:
    with Engine(EngineSetting(cache_path=str(tmp_path), max_jobs=None)) as engine:
        jobs = [LocalJob(add, args=(i, 1), condition=AfterAnother(job_id="later")) for i in range(500)]
        engine.submit(*jobs)
        assert len(engine.jobs.pending) == 500
        assert T.cast(bool, engine._call_on_loop(no_timer_armed, engine))
        engine.cancel_all()
        assert all(j.status == "cancelled" for j in jobs)
