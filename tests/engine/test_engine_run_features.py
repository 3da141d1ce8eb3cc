"""What a test run needs from the engine: job timeouts, exclusive jobs, status listeners, caller jobs."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import typing as T

import psutil
import pytest

from executor.engine import CallerJob, Engine, EngineSetting, JobTimeoutError, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.extend import SubprocessJob

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ timeout
@pytest.mark.parametrize("bad", [-1, 0, math.nan, math.inf, True, "5", [1]])
def test_a_bad_timeout_is_refused_at_construction_naming_the_argument(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="timeout must be"):
        LocalJob(print, timeout=bad)  # type: ignore[arg-type]


def test_exclusive_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="exclusive must be True or False, got 1"):
        ThreadJob(print, exclusive=1)  # type: ignore[arg-type]


def test_a_coroutine_job_past_its_timeout_fails_with_job_timeout_error_and_is_retried() -> None:
    flags: list[bool] = []

    async def hang() -> None:
        job_ref = jobs[0]
        flags.append(job_ref._timed_out)
        await asyncio.Event().wait()

    jobs = [LocalJob(hang, timeout=0.05, retries=1)]
    with Engine() as engine:
        engine.submit(*jobs)
        engine.wait(timeout=30)
    job = jobs[0]
    assert job.status == "failed" and job.attempts == 2 and flags == [False, False]
    assert isinstance(job.exception(), JobTimeoutError) and isinstance(job.exception(), TimeoutError)
    assert "ran longer than its timeout of 0.05 s (attempt 2 of 2)" in str(job.exception())


def test_a_thread_job_past_its_timeout_fails_and_a_quick_one_is_done() -> None:
    release = threading.Event()
    slow = ThreadJob(release.wait, args=(30,), timeout=0.05)
    quick = ThreadJob(lambda: 7, timeout=10)
    with Engine() as engine:
        engine.submit(slow, quick)
        engine.wait(timeout=30)
        release.set()
    assert isinstance(slow.exception(), JobTimeoutError)
    assert quick.status == "done" and quick.result() == 7


def test_a_process_job_past_its_timeout_fails_and_its_worker_is_gone() -> None:
    job = ProcessJob(time.sleep, args=(30,), timeout=0.3)
    with Engine(EngineSetting(max_process_jobs=1)) as engine:
        engine.submit(job)
        engine.wait(timeout=20)
        assert job.status == "failed" and isinstance(job.exception(), JobTimeoutError)
        assert job.worker_pid is not None
        try:
            psutil.Process(job.worker_pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass


def test_a_command_past_its_timeout_is_stopped() -> None:
    job = SubprocessJob("sleep 30", timeout=0.2)
    with Engine() as engine:
        engine.submit(job)
        engine.wait(timeout=20)
    assert job.status == "failed" and isinstance(job.exception(), JobTimeoutError)


def test_a_sync_local_job_that_returns_late_fails_when_it_returns() -> None:
    done = threading.Event()
    job = LocalJob(done.wait, args=(0.3,), timeout=0.05)  # blocks the loop: the timer cannot fire
    with Engine() as engine:
        engine.submit(job)
        engine.wait(timeout=20)
    assert job.status == "failed" and isinstance(job.exception(), JobTimeoutError)


def test_timeout_on_a_generator_function_is_refused_at_submit() -> None:
    def gen() -> T.Iterator[int]:
        yield 1

    with Engine() as engine:
        with pytest.raises(ValueError, match="timeout cannot bound a generator"):
            engine.submit(LocalJob(gen, timeout=1))


# ---------------------------------------------------------------- exclusive
def test_an_exclusive_job_runs_alone() -> None:
    lock = threading.Lock()
    running: list[int] = []
    overlaps: list[tuple[str, int]] = []

    def work(name: str) -> None:
        with lock:
            running.append(1)
            overlaps.append((name, len(running)))
        threading.Event().wait(0.02)
        with lock:
            running.pop()

    before = [ThreadJob(work, args=(f"b{i}",)) for i in range(4)]
    alone = ThreadJob(work, args=("alone",), exclusive=True)
    after = [ThreadJob(work, args=(f"a{i}",)) for i in range(4)]
    with Engine(EngineSetting(max_jobs=4)) as engine:
        engine.submit(*before, alone, *after)
        assert engine.wait(timeout=30)
    assert ("alone", 1) in overlaps
    order = [name for name, _ in overlaps]
    assert order.index("alone") > max(order.index(f"b{i}") for i in range(4))
    assert order.index("alone") < min(order.index(f"a{i}") for i in range(4))


# ---------------------------------------------------------------- listeners
def test_listeners_see_every_status_change_on_the_loop_thread() -> None:
    seen: list[tuple[str, str]] = []
    threads: set[int] = set()

    def listener(job: T.Any, status: str) -> None:
        seen.append((job.name, status))
        threads.add(threading.get_ident())

    def broken(job: T.Any, status: str) -> None:
        raise RuntimeError("a broken listener")

    def fails() -> None:
        raise ValueError("no")

    with Engine() as engine:
        engine.add_listener(listener)
        engine.add_listener(broken)
        ok, bad = LocalJob(lambda: 1, name="ok"), LocalJob(fails, name="bad", retries=1)
        engine.submit(ok, bad)
        engine.wait(timeout=30)
        engine.remove_listener(broken)
        engine.remove_listener(listener)
        with pytest.raises(ValueError, match="is not a listener"):
            engine.remove_listener(listener)
        with pytest.raises(TypeError, match="takes a callable"):
            engine.add_listener("nope")  # type: ignore[arg-type]
        loop_thread = engine._loop_thread_id
    assert [s for n, s in seen if n == "ok"] == ["pending", "running", "done"]
    assert [s for n, s in seen if n == "bad"] == ["pending", "running", "pending", "running", "failed"]
    assert threads == {loop_thread}


# ------------------------------------------------------------------- caller
def test_caller_jobs_run_on_the_thread_that_waits_with_dependencies_and_retries() -> None:
    main = threading.get_ident()
    tries: list[int] = []

    def flaky() -> int:
        tries.append(threading.get_ident())
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return 2

    first = CallerJob(flaky, retries=1)
    second = CallerJob(lambda x: (x * 10, threading.get_ident()), args=(first.future,))
    with Engine() as engine:
        engine.submit(first, second)
        assert engine.wait(timeout=30)
    assert tries == [main, main] and first.attempts == 2
    assert second.result() == (20, main)


def test_job_wait_and_serve_caller_run_caller_bodies_too() -> None:
    main = threading.get_ident()
    with Engine() as engine:
        one = CallerJob(threading.get_ident)
        engine.submit(one)
        one.wait(timeout=30)
        two = CallerJob(threading.get_ident)
        engine.submit(two)
        assert engine.serve_caller([two], timeout=30)
    assert one.result() == main and two.result() == main


def test_a_caller_job_waits_for_a_waiting_thread() -> None:
    ran: list[int] = []
    with Engine() as engine:
        job = CallerJob(lambda: ran.append(1) or 1)
        engine.submit(job)
        assert job.status == "running" and ran == []  # holds its slot; nobody waits, so its body has not run
        assert engine.wait_job(job, timeout=30) == 1 and ran == [1]


def test_a_caller_job_past_its_timeout_fails_when_its_body_returns() -> None:
    job = CallerJob(threading.Event().wait, args=(0.3,), timeout=0.05)
    with Engine() as engine:
        engine.submit(job)
        engine.wait(timeout=30)
    assert job.status == "failed" and isinstance(job.exception(), JobTimeoutError)


def test_a_caller_job_queued_past_its_timeout_is_withdrawn_and_never_runs() -> None:
    ran: list[int] = []
    job = CallerJob(ran.append, args=(1,), timeout=0.05)
    with Engine() as engine:
        engine.submit(job)
        done = threading.Event()
        engine.add_listener(lambda j, status: done.set() if j is job and status == "failed" else None)
        assert done.wait(10)  # nobody served the lane
        engine.wait(timeout=30)
    assert ran == [] and isinstance(job.exception(), JobTimeoutError)


def test_caller_jobs_refuse_generator_functions() -> None:
    def gen() -> T.Iterator[int]:
        yield 1

    with Engine() as engine:
        with pytest.raises(TypeError, match="generator functions cannot run as caller jobs"):
            engine.submit(CallerJob(gen))
