"""Tests that use the ``engine`` fixture to run jobs of their own."""

from __future__ import annotations

from executor.engine import Engine, LocalJob, ThreadJob


def add(a: int, b: int) -> int:
    return a + b


def test_chain_of_jobs(engine: Engine) -> None:
    first = LocalJob(add, args=(1, 2))
    second = ThreadJob(add, args=(first.future, 4))
    engine.submit(first, second)
    engine.wait()
    assert second.result() == 7


def test_job_failure_is_reported(engine: Engine) -> None:
    def boom() -> None:
        raise ValueError("boom")

    job = LocalJob(boom)
    engine.submit(job)
    engine.wait()
    assert job.status == "failed"
    assert isinstance(job.exception(), ValueError)
