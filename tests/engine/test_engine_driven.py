"""An engine driven by its caller (``start(loop_thread=False)``): no loop thread, CallerJobs back to back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from executor.engine import CallerJob, Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.condition import AfterAnother, AfterTimepoint
from executor.engine.log import logger

pytestmark = pytest.mark.timeout(60)

FINISHED = ("done", "failed", "cancelled")


def where() -> tuple[int, bool]:
    """The running thread, and whether an event loop runs on it (asyncio.run must work in a body)."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    asyncio.run(asyncio.sleep(0))
    return threading.get_ident(), running


def test_caller_jobs_run_on_the_driving_thread_with_no_loop_running_and_no_thread_started() -> None:
    before = set(threading.enumerate())
    engine = Engine()
    engine.start(loop_thread=False)
    try:
        assert engine.is_running
        jobs = [CallerJob(where) for _ in range(50)]
        engine.submit(*jobs)
        assert set(threading.enumerate()) == before
        assert engine.serve_caller() is True
        assert {job.result() for job in jobs} == {(threading.get_ident(), False)}
    finally:
        engine.stop()
    assert not engine.is_running


def test_a_chain_of_caller_jobs_keeps_its_order_with_retries_and_other_job_kinds() -> None:
    order: list[int] = []
    tries: list[int] = []

    def step(i: int) -> int:
        if i == 2 and len(tries) < 2:
            tries.append(i)
            raise ValueError("flaky")
        order.append(i)
        return i

    engine = Engine()
    engine.start(loop_thread=False)
    try:
        chain: list[CallerJob] = []
        for i in range(6):
            condition = AfterAnother(job_id=chain[-1].id, statuses=FINISHED) if chain else None
            chain.append(CallerJob(step, args=(i,), condition=condition, retries=2))
        others = [LocalJob(sum, args=([1, 2],)), ThreadJob(time.sleep, args=(0.01,))]
        engine.submit(*reversed(chain), *others)
        engine.wait()
        assert order == list(range(6))
        assert [job.status for job in chain] == ["done"] * 6
        assert chain[2].attempts == 3
        assert others[0].result() == 3 and others[1].status == "done"
    finally:
        engine.stop()


def test_serve_caller_with_timeout_zero_runs_what_is_ready_and_returns() -> None:
    engine = Engine()
    engine.start(loop_thread=False)
    try:
        ready = [CallerJob(where) for _ in range(3)]
        later = CallerJob(where, condition=AfterTimepoint(timepoint=_in(30)))
        engine.submit(*ready, later)
        assert engine.serve_caller(timeout=0) is False  # `later` still waits
        assert [job.status for job in ready] == ["done"] * 3
        assert later.status == "pending"
        assert engine.serve_caller(ready, timeout=0) is True
    finally:
        engine.stop()
    assert later.status == "cancelled"


def test_a_time_condition_wakes_the_waiting_driver() -> None:
    engine = Engine()
    engine.start(loop_thread=False)
    try:
        job = CallerJob(where, condition=AfterTimepoint(timepoint=_in(0.1)))
        engine.submit(job)
        assert engine.wait_job(job, timeout=10) == (threading.get_ident(), False)
    finally:
        engine.stop()


def test_a_process_job_completes_while_the_driver_waits() -> None:
    engine = Engine(EngineSetting(max_process_jobs=1))
    engine.start(loop_thread=False)
    try:
        job = ProcessJob(sum, args=([1, 2, 3],))
        engine.submit(job)
        assert engine.wait_job(job, timeout=30) == 6
    finally:
        engine.stop()


def test_only_the_driving_thread_may_wait_or_stop() -> None:
    engine = Engine()
    engine.start(loop_thread=False)
    errors: list[BaseException] = []

    def other() -> None:
        for call in (engine.wait, engine.stop):
            try:
                call()
            except RuntimeError as error:
                errors.append(error)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    engine.stop()
    assert len(errors) == 2
    assert "thread that started it" in str(errors[0]) and "thread that started it" in str(errors[1])


def test_ctrl_c_in_a_body_reaches_the_driver_and_fails_the_job() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    engine = Engine(EngineSetting(print_traceback=False))
    engine.start(loop_thread=False)
    job = CallerJob(interrupt)
    try:
        engine.submit(job)
        with pytest.raises(KeyboardInterrupt):
            engine.serve_caller()
        assert job.status == "failed"
    finally:
        engine.stop()


def test_retries_and_failures_log_nothing_at_the_default_levels(capfd: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    engine = Engine(EngineSetting(print_traceback=False))
    engine.start(loop_thread=False)
    try:
        job = CallerJob(_fail, retries=2)
        engine.submit(job)
        engine.serve_caller()
        assert job.status == "failed" and job.attempts == 3
    finally:
        engine.stop()
        logger.remove(sink)
    assert lines == []
    assert capfd.readouterr() == ("", "")


def _fail() -> None:
    raise ValueError("no")


def _in(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta

    return datetime.now() + timedelta(seconds=seconds)
