"""A job class that overrides upstream's ``on_done``/``on_failed`` has them called as executor-engine 0.3.3 does.

Upstream awaits ``on_done(result)`` when an attempt returns and
``on_failed(exception)`` when it raises, once per attempt (retries included),
with the job still ``running``; the base forms finish the attempt.  An error
raised by ``on_done`` fails the job with that error.
"""

from __future__ import annotations

import typing as T
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob

from _engine_helpers import add, fail

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def engine(tmp_path: Path) -> T.Iterator[Engine]:
    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


class TrackedThreadJob(ThreadJob):
    """Records each hook call the way an upstream subclass would, then lets the base finish."""

    seen: list[tuple[str, str, T.Any, int]] = []

    async def on_done(self, res: T.Any) -> None:
        self.seen.append(("done", self.status, res, self.retry_remain))
        await super().on_done(res)

    async def on_failed(self, e: Exception) -> None:
        self.seen.append(("failed", self.status, repr(e), self.retry_remain))
        await super().on_failed(e)


class TrackedProcessJob(ProcessJob):
    seen: list[tuple[str, T.Any]] = []

    async def on_done(self, res: T.Any) -> None:
        self.seen.append(("done", res))
        await super().on_done(res)


class FailingHookJob(LocalJob):
    async def on_done(self, res: T.Any) -> None:
        raise RuntimeError(f"hook saw {res}")


@pytest.fixture(autouse=True)
def fresh_records() -> None:
    TrackedThreadJob.seen = []
    TrackedProcessJob.seen = []


def test_on_done_and_on_failed_are_awaited_per_attempt_while_running(engine: Engine) -> None:
    ok = TrackedThreadJob(add, args=(40, 2))
    bad = TrackedThreadJob(fail, args=("nope",), retries=1, retry_time_delta=0.01)
    done_values: list[T.Any] = []
    ok.future.add_done_callback(done_values.append)
    engine.submit(ok, bad)
    assert engine.wait(timeout=30)
    assert ok.status == "done" and ok.result() == 42 and done_values == [42]
    assert bad.status == "failed"
    assert sorted(TrackedThreadJob.seen) == sorted([
        ("done", "running", 42, 0),
        ("failed", "running", "ValueError('nope')", 1),
        ("failed", "running", "ValueError('nope')", 0),
    ])


def test_on_done_of_a_process_job_gets_the_result_from_the_worker(engine: Engine) -> None:
    job = TrackedProcessJob(add, args=(1, 2))
    engine.submit(job)
    assert engine.wait_job(job, timeout=30) == 3
    assert TrackedProcessJob.seen == [("done", 3)]


def test_an_error_raised_by_on_done_fails_the_job(engine: Engine) -> None:
    job = FailingHookJob(add, args=(1, 1))
    engine.submit(job)
    assert engine.wait_job(job, timeout=30) is None
    assert job.status == "failed"
    error = job.exception()
    assert isinstance(error, RuntimeError) and str(error) == "hook saw 2"
