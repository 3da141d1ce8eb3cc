"""Engine behaviour with real threads and processes: statuses, dependencies, retries,
cancellation, generators, options, limits, shutdown."""

from __future__ import annotations

import asyncio
import os
import threading
import typing as T
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.condition import AfterAnother, AfterOthers, Condition
from executor.engine.log import logger
from executor.engine.manager import JobNotFoundError
from executor.engine.job.utils import InvalidStateError, JobEmitError, WorkerCrashedError

from _engine_helpers import add, fail, pid, pid_alive, touch_then_wait, wait_for_file, wait_until

JOB_TYPES = [LocalJob, ThreadJob, ProcessJob]


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_status_path_created_pending_running_done(engine: Engine, job_cls: type) -> None:
    seen: list[str] = []
    job = job_cls(add, args=(1, 2), callback=lambda r: seen.append(job.status))
    assert job.status == "created"
    engine.submit(job)
    assert job.status in ("running", "done")
    engine.wait_job(job, timeout=30)
    assert job.status == "done" and job.result() == 3 and job.exception() is None
    assert seen == ["done"]
    assert job.attempts == 1 and job.start_time and job.stop_time


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_failure_keeps_exception_and_engine_keeps_running(engine: Engine, job_cls: type) -> None:
    errors: list[BaseException] = []
    bad = job_cls(fail, args=("broken",), error_callback=errors.append)
    engine.submit(bad)
    engine.wait_job(bad, timeout=30)
    assert bad.status == "failed"
    assert isinstance(bad.exception(), ValueError) and str(bad.exception()) == "broken"
    assert errors == [bad.exception()] or str(errors[0]) == "broken"
    assert "broken" in (bad.traceback or "")
    with pytest.raises(InvalidStateError, match="failed"):
        bad.result()
    good = job_cls(add, args=(2, 2))
    engine.submit(good)
    engine.wait_job(good, timeout=30)
    assert good.result() == 4


def test_job_futures_chain_across_backends(engine: Engine) -> None:
    j1 = LocalJob(add, args=(1, 2))
    j2 = ThreadJob(add, args=(j1.future, 4))
    j3 = ProcessJob(add, kwargs={"a": j2.future, "b": 5})
    engine.submit(j3, j2, j1)
    assert engine.wait(timeout=30)
    assert (j1.result(), j2.result(), j3.result()) == (3, 7, 12)


@pytest.mark.parametrize("upstream_fn, status", [(fail, "failed"), (None, "cancelled")])
def test_upstream_failure_or_cancel_cancels_dependents(engine: Engine, upstream_fn: object, status: str) -> None:
    gate = threading.Event()
    up = ThreadJob(lambda: (gate.wait(30), fail())) if upstream_fn else ThreadJob(gate.wait, args=(30,))
    down = LocalJob(add, args=(up.future, 1))
    downer = LocalJob(add, args=(down.future, 1))
    engine.submit(up, down, downer)
    assert down.status == "pending" and downer.status == "pending"
    if upstream_fn is None:
        engine.cancel(up)
    gate.set()
    engine.wait(timeout=30)
    assert up.status == status
    assert down.status == "cancelled" and downer.status == "cancelled"


def test_after_another_runs_after_failure_too(engine: Engine) -> None:
    order: list[str] = []
    gate = threading.Event()
    first = ThreadJob(lambda: (gate.wait(30), order.append("first"), 1 / 0))
    second = LocalJob(lambda: order.append("second"), condition=AfterAnother(job_id=first.id))
    engine.submit(second, first)
    assert second.status == "pending"
    gate.set()
    engine.wait(timeout=30)
    assert order == ["first", "second"] and second.status == "done" and first.status == "failed"


def test_after_others_any_mode(engine: Engine) -> None:
    gate = threading.Event()
    slow = ThreadJob(gate.wait, args=(30,))
    quick = LocalJob(add, args=(0, 0))
    after = LocalJob(add, args=(1, 1), condition=AfterOthers(job_ids=[slow.id, quick.id], mode="any"))
    engine.submit(slow, quick, after)
    engine.wait_job(after, timeout=30)
    assert slow.status == "running" and after.result() == 2
    gate.set()


def test_custom_condition_is_polled_until_true(engine: Engine) -> None:
    flag = threading.Event()

    class WhenFlag(Condition):
        def satisfy(self, engine: Engine) -> bool:
            return flag.is_set()

    job = LocalJob(add, args=(1, 1), condition=WhenFlag(), wait_time_delta=0.01)
    engine.submit(job)
    assert job.status == "pending"
    flag.set()
    engine.wait_job(job, timeout=30)
    assert job.result() == 2


def test_condition_that_raises_fails_the_job(engine: Engine) -> None:
    class Broken(Condition):
        def satisfy(self, engine: Engine) -> bool:
            raise RuntimeError("bad condition")

    job = LocalJob(add, args=(1, 1), condition=Broken())
    engine.submit(job)
    assert job.status == "failed" and "bad condition" in str(job.exception())


def test_retries_then_success(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"

    def flaky() -> int:
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n < 2:
            raise OSError(f"attempt {n}")
        return n

    job = ProcessJob(flaky, retries=2, retry_time_delta=0.01)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "done" and job.result() == 2 and job.attempts == 3


def test_retries_exhausted_fails(engine: Engine) -> None:
    calls: list[int] = []
    job = LocalJob(lambda: (calls.append(1), fail())[1], retries=1)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "failed" and len(calls) == 2


def test_cancel_pending_and_running_thread_job(engine: Engine) -> None:
    gate = threading.Event()
    running = ThreadJob(gate.wait, args=(30,))
    pending = LocalJob(add, args=(running.future, 1))
    engine.submit(running, pending)
    engine.cancel(pending)
    assert pending.status == "cancelled"
    engine.cancel(running)
    assert running.status == "cancelled"
    gate.set()
    assert engine.wait(timeout=30)
    assert running.status == "cancelled"


def test_cancel_running_process_job_kills_and_replaces_its_worker(engine: Engine, tmp_path: Path) -> None:
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    job = ProcessJob(touch_then_wait, args=(started, release))
    engine.submit(job)
    wait_for_file(started)
    worker_pid = int(Path(started).read_text())
    assert job.worker_pid == worker_pid
    engine.cancel(job)
    assert job.status == "cancelled"
    assert not pid_alive(worker_pid)
    assert worker_pid not in engine.process_pool.pids
    again = ProcessJob(pid)
    engine.submit(again)
    engine.wait_job(again, timeout=30)
    assert again.result() != worker_pid


def test_crashing_worker_fails_its_job_and_pool_recovers(engine: Engine) -> None:
    crash = ProcessJob(os._exit, args=(3,))
    engine.submit(crash)
    engine.wait_job(crash, timeout=30)
    assert crash.status == "failed" and isinstance(crash.exception(), WorkerCrashedError)
    assert "exit code 3" in str(crash.exception())
    ok = ProcessJob(add, args=(1, 1))
    engine.submit(ok)
    engine.wait_job(ok, timeout=30)
    assert ok.result() == 2


def test_process_jobs_reuse_warm_workers_and_respect_the_limit(tmp_path: Path) -> None:
    with Engine(EngineSetting(max_process_jobs=2)) as engine:
        jobs = [ProcessJob(pid) for _ in range(12)]
        engine.submit(*jobs)
        assert len(engine.jobs.running) == 2 and len(engine.jobs.pending) == 10
        engine.wait(timeout=60)
        assert len({j.result() for j in jobs}) <= 2
        assert len(engine.process_pool.pids) <= 2


def test_max_jobs_limits_concurrency(tmp_path: Path) -> None:
    gate = threading.Event()
    with Engine(EngineSetting(max_jobs=2)) as engine:
        jobs = [ThreadJob(gate.wait, args=(30,)) for _ in range(5)]
        engine.submit(*jobs)
        assert len(engine.jobs.running) == 2 and len(engine.jobs.pending) == 3
        gate.set()
        assert engine.wait(timeout=30)
        assert len(engine.jobs.done) == 5


def test_lambdas_and_closures_run_in_processes(engine: Engine) -> None:
    k = 10
    jobs = [ProcessJob(lambda x: x * k, args=(i,)) for i in range(3)]
    engine.submit(*jobs)
    engine.wait(timeout=30)
    assert [j.result() for j in jobs] == [0, 10, 20]


def test_resubmitting_finished_job_reruns_it_and_active_job_is_an_error(engine: Engine) -> None:
    gate = threading.Event()
    calls: list[int] = []
    job = ThreadJob(lambda: (calls.append(1), gate.wait(30)))
    engine.submit(job)
    with pytest.raises(JobEmitError, match="already running"):
        engine.submit(job)
    gate.set()
    engine.wait_job(job, timeout=30)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    asyncio.run_coroutine_threadsafe(job.rerun(), engine.loop).result(30)  # upstream's rerun is a coroutine
    engine.wait_job(job, timeout=30)
    assert len(calls) == 3 and job.status == "done" and job.attempts == 1


def test_late_result_of_a_cancelled_thread_call_does_not_finish_its_rerun(tmp_path: Path) -> None:
    gates = [threading.Event(), threading.Event()]
    calls: list[int] = []

    def attempt() -> str:
        n = len(calls)
        calls.append(n)
        gates[n].wait(30)
        return f"attempt {n}"

    with Engine(EngineSetting(max_thread_jobs=2, cache_path=str(tmp_path))) as engine:
        job = ThreadJob(attempt)
        engine.submit(job)
        assert wait_until(lambda: len(calls) == 1)  # a call cancelled before its thread took it never runs
        engine.cancel(job)
        engine.submit(job)  # the first call still blocks its thread; the rerun gets the other one
        wait_until(lambda: len(calls) == 2)
        gates[0].set()
        # only the first call's thread is free for the marker: its late result is handed back first
        marker = ThreadJob(add, args=(1, 1))
        engine.submit(marker)
        engine.wait_job(marker, timeout=30)
        assert marker.result() == 2
        assert job.status == "running"
        gates[1].set()
        engine.wait_job(job, timeout=30)
        assert job.status == "done" and job.result() == "attempt 1"


def test_many_thread_jobs_respect_the_limit_with_retries_and_callbacks(tmp_path: Path) -> None:
    lock = threading.Lock()
    running, peak, results, failures = [0], [0], [], []
    tries: dict[int, int] = {}

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            tries[i] = tries.get(i, 0) + 1
            first = tries[i] == 1
        try:
            if i % 10 == 0 and first:
                raise OSError(f"flaky {i}")
            if i == 7:
                raise ValueError("always")
            return i * 2
        finally:
            with lock:
                running[0] -= 1

    with Engine(EngineSetting(max_thread_jobs=3, max_jobs=None, cache_path=str(tmp_path))) as engine:
        jobs = [ThreadJob(work, args=(i,), retries=1, callback=results.append,
                          error_callback=failures.append) for i in range(300)]
        engine.submit(*jobs)
        assert engine.wait(timeout=60)
    assert peak[0] <= 3
    assert jobs[7].status == "failed" and isinstance(jobs[7].exception(), ValueError) and tries[7] == 2
    assert [type(e) for e in failures] == [ValueError]
    done = [j for j in jobs if j is not jobs[7]]
    assert all(j.status == "done" and j.result() == 2 * i for i, j in enumerate(jobs) if j is not jobs[7])
    assert sorted(results) == sorted(j.result() for j in done)
    assert jobs[10].attempts == 2 and jobs[11].attempts == 1


def test_remove_cancels_and_forgets(engine: Engine) -> None:
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,))
    engine.submit(job)
    engine.remove(job)
    gate.set()
    assert job.status == "cancelled" and engine.jobs.get(job.id) is None
    with pytest.raises(JobNotFoundError):  # upstream's error for an unknown id
        engine.jobs.get_job_by_id(job.id)


def test_wait_and_wait_job_timeouts(engine: Engine) -> None:
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,))
    engine.submit(job)
    assert engine.wait(timeout=0.05) is False
    assert engine.wait_job(job, timeout=0.05) is None  # as upstream: a timeout returns quietly
    assert job.status == "running"
    gate.set()
    assert engine.wait_job(job, timeout=30) is True


def test_engine_injection(engine: Engine) -> None:
    def uses_engine(x: int, __engine__: Engine) -> bool:
        return __engine__ is engine and x == 1

    for cls in (LocalJob, ThreadJob):
        job = cls(uses_engine, args=(1,))
        engine.submit(job)
        engine.wait_job(job, timeout=30)
        assert job.result() is True


def test_local_job_can_submit_more_jobs_through_the_engine(engine: Engine) -> None:
    def spawn(__engine__: Engine) -> str:
        child = LocalJob(add, args=(2, 3))
        __engine__.submit(child)
        return child.id

    job = LocalJob(spawn)
    engine.submit(job)
    engine.wait(timeout=30)
    child = engine.jobs.get_job_by_id(job.result())
    assert child is not None and child.result() == 5


def test_local_jobs_run_in_submission_order_under_a_limit(tmp_path: Path) -> None:
    order: list[int] = []
    with Engine(EngineSetting(max_jobs=2, cache_path=str(tmp_path))) as engine:
        jobs = [LocalJob(order.append, args=(i,)) for i in range(50)]
        engine.submit(*jobs)
        assert engine.wait(timeout=30)
    assert order == list(range(50))
    assert all(j.status == "done" and j.attempts == 1 for j in jobs)


def test_local_job_cancelled_before_its_turn_never_runs_and_a_rerun_runs_once(engine: Engine) -> None:
    calls: list[str] = []

    def canceller(__engine__: Engine) -> None:
        calls.append("canceller")
        __engine__.cancel(victim)  # queued behind us in the same round: must not run
        __engine__.submit(again)  # submitted, cancelled and resubmitted before it ran: runs once
        __engine__.cancel(again)
        __engine__.submit(again)

    victim = LocalJob(calls.append, args=("victim",))
    again = LocalJob(calls.append, args=("again",))
    engine.submit(LocalJob(canceller), victim)
    assert engine.wait(timeout=30)
    assert calls == ["canceller", "again"]
    assert victim.status == "cancelled" and again.status == "done"


def test_local_job_cancelled_on_one_engine_runs_on_another(tmp_path: Path) -> None:
    calls: list[Engine] = []

    def record(__engine__: Engine) -> None:
        calls.append(__engine__)

    with Engine(EngineSetting(cache_path=str(tmp_path / "a"))) as first, \
            Engine(EngineSetting(cache_path=str(tmp_path / "b"))) as second:
        job = LocalJob(record)

        def move(__engine__: Engine) -> None:
            __engine__.submit(job)
            __engine__.remove(job)  # cancelled while still queued on this engine's loop
            second.submit(job)

        first.submit(LocalJob(move))
        assert first.wait(timeout=30)
        second.wait_job(job, timeout=30)
    assert calls == [second] and job.status == "done"


def test_local_job_returning_an_awaitable_is_awaited(engine: Engine) -> None:
    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    job = LocalJob(lambda: later(21))
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.result() == 42


def test_each_local_job_runs_in_its_own_context(engine: Engine) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def set_and_read(value: str) -> str:
        seen = var.get()
        var.set(value)
        return seen

    jobs = [LocalJob(set_and_read, args=(str(i),)) for i in range(3)]
    engine.submit(*jobs)
    assert engine.wait(timeout=30)
    assert [j.result() for j in jobs] == ["unset"] * 3


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_redirect_out_err_to_cache_dir_and_change_dir(engine: Engine, job_cls: type, tmp_path: Path) -> None:
    def talk() -> str:
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return os.getcwd()

    job = job_cls(talk, redirect_out_err=True, change_dir=True)
    assert not engine.cache_dir.exists()  # nothing created before it is needed
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "done", job.traceback
    assert (job.cache_dir / "stdout.txt").read_text() == "to stdout\n"
    assert (job.cache_dir / "stderr.txt").read_text() == "to stderr\n"
    assert Path(job.result()) == job.cache_dir.resolve()


def test_redirect_to_one_file(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "job.log"
    job = ProcessJob(lambda: print("hello"), redirect_out_err=str(log))
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert log.read_text() == "hello\n"


@pytest.mark.parametrize("job_cls", [*JOB_TYPES, "SubprocessJob"])
def test_redirect_to_a_home_relative_file_expands_the_tilde(engine: Engine, job_cls: type | str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    if job_cls == "SubprocessJob":
        from executor.engine.job.extend import SubprocessJob

        job: T.Any = SubprocessJob("echo hello", redirect_out_err="~/logs/job.log")
    else:
        job = T.cast(type, job_cls)(print, args=("hello",), redirect_out_err="~/logs/job.log")
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "done", job.traceback
    assert (home / "logs" / "job.log").read_text() == "hello\n"
    assert list(work.iterdir()) == []  # no folder named "~" in the working directory


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_redirect_to_a_directory_is_refused_when_the_job_is_made(job_cls: type, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="redirect_out_err .* is a directory: give a file path"):
        job_cls(print, redirect_out_err=str(tmp_path))


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_sync_generator_job_runs_until_exhausted(engine: Engine, job_cls: type) -> None:
    def counter(n: int):  # type: ignore[no-untyped-def]
        total = 0
        for i in range(n):
            got = yield i + total
            total += got or 0

    job = job_cls(counter, args=(4,))
    engine.submit(job)
    gen = job.result()
    assert next(gen) == 0
    assert job.status == "running"
    assert gen.send(10) == 11
    assert list(gen) == [12, 13]
    engine.wait_job(job, timeout=30)
    assert job.status == "done"


@pytest.mark.parametrize("job_cls", JOB_TYPES)
def test_generator_error_fails_the_job(engine: Engine, job_cls: type) -> None:
    def broken():  # type: ignore[no-untyped-def]
        yield 1
        raise KeyError("gen")

    job = job_cls(broken)
    engine.submit(job)
    gen = job.result()
    assert next(gen) == 1
    with pytest.raises(KeyError):
        next(gen)
    engine.wait_job(job, timeout=30)
    assert job.status == "failed" and isinstance(job.exception(), KeyError)


@pytest.mark.asyncio
@pytest.mark.parametrize("job_cls", JOB_TYPES)
async def test_async_generator_job_with_asend(job_cls: type) -> None:
    async def agen():  # type: ignore[no-untyped-def]
        received = None
        for i in range(3):
            received = yield (i, received)

    engine = Engine()
    job = job_cls(agen)
    await engine.submit_async(job)
    proxy = job.result()
    assert await proxy.__anext__() == (0, None)
    assert await proxy.asend("x") == (1, "x")
    assert [item async for item in proxy] == [(2, None)]
    await engine.join([job], timeout=30)
    assert job.status == "done"
    engine.stop()


@pytest.mark.asyncio
async def test_async_use_without_start_and_coroutine_functions() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    engine = Engine()
    jobs = [cls(double, args=(i,)) for i, cls in enumerate(JOB_TYPES)]
    await engine.submit_async(*jobs)
    await engine.join(timeout=30)
    assert [j.result() for j in jobs] == [0, 2, 4]
    await jobs[0].join()
    engine.stop()


def test_cancelling_a_running_generator_process_job_kills_its_worker(engine: Engine) -> None:
    def numbers():  # type: ignore[no-untyped-def]
        yield os.getpid()
        yield 2

    job = ProcessJob(numbers)
    engine.submit(job)
    worker_pid = next(job.result())
    engine.cancel(job)
    assert job.status == "cancelled"
    assert wait_until(lambda: not pid_alive(worker_pid))


def test_submit_on_never_started_engine_raises() -> None:
    engine = Engine()
    with pytest.raises(RuntimeError, match="not started"):
        engine.submit(LocalJob(add, args=(1, 2)))


def test_result_on_unfinished_job_is_an_error(engine: Engine) -> None:
    job = LocalJob(add, args=(1, 2))
    with pytest.raises(InvalidStateError, match="created"):
        job.result()
    gate = threading.Event()
    running = ThreadJob(gate.wait, args=(30,))
    engine.submit(running)
    with pytest.raises(InvalidStateError, match="running"):
        running.result()
    gate.set()


@pytest.mark.parametrize("kwargs, match", [
    ({"func": 42}, "func must be callable"),
    ({"func": add, "callback": "nope"}, "callback must be callable"),
    ({"func": add, "args": "ab"}, "args must be"),
    ({"func": add, "retries": -1}, "retries"),
    ({"func": add, "condition": "after"}, "condition must be a Condition"),
    ({"func": add, "wait_time_delta": 0}, "wait_time_delta"),
])
def test_bad_job_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        LocalJob(**kwargs)


@pytest.mark.parametrize("field", ["max_jobs", "max_thread_jobs", "max_process_jobs", "max_dask_jobs"])
def test_negative_limit_in_setting_is_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EngineSetting(**{field: -1})


def test_submit_non_job_is_a_type_error(engine: Engine) -> None:
    with pytest.raises(TypeError, match="expected Job"):
        engine.submit(add)  # type: ignore[arg-type]


def test_process_job_rejects_engine_injection_silently_by_not_injecting(engine: Engine) -> None:
    job = ProcessJob(lambda __engine__=None: __engine__ is None)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.result() is True


def test_stop_leaves_no_thread_or_process_and_cancels_leftovers(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    engine = Engine()
    engine.start()
    started, release = str(tmp_path / "s"), str(tmp_path / "r")
    busy = ProcessJob(touch_then_wait, args=(started, release))
    idle_job = ProcessJob(pid)
    threads = ThreadJob(add, args=(1, 1))
    engine.submit(busy, idle_job, threads)
    wait_for_file(started)
    engine.wait_job(idle_job, timeout=30)
    pids = engine.process_pool.pids
    assert len(pids) == 2
    engine.stop()
    assert busy.status == "cancelled"
    assert all(not pid_alive(p) for p in pids)
    assert {t.ident for t in threading.enumerate()} == before


@pytest.fixture
def log_lines():  # type: ignore[no-untyped-def]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    yield lines
    logger.remove(sink)


def test_engine_prints_nothing_to_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                         log_lines: list[str]) -> None:
    with Engine(EngineSetting(cache_path=str(tmp_path))) as engine:
        jobs = [LocalJob(fail), ThreadJob(add, args=(1, 1)), ProcessJob(fail)]
        engine.submit(*jobs)
        engine.wait(timeout=30)
    out, _ = capfd.readouterr()
    assert out == ""
    assert sum("ValueError" in line and "ERROR" in line for line in log_lines) == 2


def test_print_traceback_false_keeps_errors_quiet(log_lines: list[str]) -> None:
    with Engine(EngineSetting(print_traceback=False)) as engine:
        job = LocalJob(fail)
        engine.submit(job)
        engine.wait(timeout=30)
    assert not any("Traceback" in line or "ERROR" in line for line in log_lines)


def test_nothing_is_created_on_disk_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Engine() as engine:
        jobs = [LocalJob(add, args=(1, 1)), ProcessJob(add, args=(1, 1))]
        engine.submit(*jobs)
        engine.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []
