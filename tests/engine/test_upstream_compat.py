"""Code written for executor-engine 0.3.3 runs unchanged: its methods, custom job types, reprs and files.

Each test is written the way executor-engine's own docs and source use its
API, and runs real jobs on a real engine.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import typing as T
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.base import ExecutorObj
from executor.engine.core import Resource
from executor.engine.job import Job
from executor.engine.job.base import JobFuture
from executor.engine.job.condition import AfterAnother, AfterOthers, AllSatisfied, Combination, EveryPeriod
from executor.engine.job.extend import SubprocessJob
from executor.engine.job.utils import InvalidStateError, valid_job_statuses
from executor.engine.manager import JobNotFoundError, Jobs, JobStore
from executor.engine.utils import ExecutorError

from _engine_helpers import add, fail


@pytest.fixture
def engine(tmp_path: Path) -> T.Iterator[Engine]:
    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


def on_loop(engine: Engine, coro: T.Coroutine[T.Any, T.Any, T.Any], timeout: float = 30) -> T.Any:
    """Run an upstream coroutine method (they run on the engine's loop) from the test thread."""
    assert engine.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, engine.loop).result(timeout)


# ------------------------------------------------------------ custom job types
class UpstreamStyleLocalJob(Job):
    """Written as executor-engine's LocalJob is: ``run_function``/``run_generator`` read the job's own call."""

    async def run_function(self) -> T.Any:  # type: ignore[override]
        if asyncio.iscoroutinefunction(self.func):
            return await self.func(*self.args, **self.kwargs)
        return self.func(*self.args, **self.kwargs)


class OwnExecutorJob(Job):
    """Written as executor-engine's ThreadJob is: its own executor, released by ``clear_context``."""

    cleared: T.ClassVar[list[str]] = []

    async def run_function(self) -> T.Any:  # type: ignore[override]
        func = functools.partial(self.func, *self.args, **self.kwargs)
        self._executor = ThreadPoolExecutor(1)
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def clear_context(self) -> None:
        OwnExecutorJob.cleared.append(self.id)
        self._executor.shutdown(wait=False)
        self._executor = None


class CancelAwareJob(UpstreamStyleLocalJob):
    """Overrides ``cancel`` as executor-engine's ThreadJob/ProcessJob do: clean up, then the base cancel."""

    cancelled_while: T.ClassVar[list[str]] = []

    async def cancel(self) -> None:
        CancelAwareJob.cancelled_while.append(self.status)
        await super().cancel()


GPUS = {"free": 1, "most_in_use": 0, "in_use": 0}


class GPUJob(Job):
    """A job type with a resource of its own, through upstream's resource hooks."""

    def has_resource(self) -> bool:
        return super().has_resource() and GPUS["free"] > 0

    def consume_resource(self) -> bool:
        GPUS["free"] -= 1
        GPUS["in_use"] += 1
        GPUS["most_in_use"] = max(GPUS["most_in_use"], GPUS["in_use"])
        return super().consume_resource()

    def release_resource(self) -> bool:
        GPUS["free"] += 1
        GPUS["in_use"] -= 1
        return super().release_resource()

    async def run_function(self) -> T.Any:  # type: ignore[override]
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(
            self.func, *self.args, **self.kwargs))


def test_a_custom_job_written_the_upstream_way_runs_with_futures_callbacks_and_redirection(engine: Engine) -> None:
    seen: list[int] = []
    first = UpstreamStyleLocalJob(add, args=(1, 2), callback=seen.append)
    second = UpstreamStyleLocalJob(add, args=(first.future, 10), redirect_out_err=True)
    chatty = UpstreamStyleLocalJob(print, args=("to the file",), redirect_out_err=True)
    engine.submit(second, first, chatty)  # submitted before the job it depends on
    engine.wait(timeout=30)
    assert (first.result(), second.result(), seen) == (3, 13, [3])
    assert second.args == (first.future, 10)  # the resolved call was the attempt's only: a rerun starts afresh
    assert (chatty.cache_dir / "stdout.txt").read_text() == "to the file\n"


def test_a_custom_job_with_its_own_executor_is_cleared_when_cancelled(engine: Engine) -> None:
    gate = threading.Event()
    job = OwnExecutorJob(gate.wait, args=(30,))
    engine.submit(job)
    on_loop(engine, job.wait_until_status("running", timeout=30))
    engine.cancel(job)
    gate.set()
    assert job.status == "cancelled" and OwnExecutorJob.cleared == [job.id]


def test_engine_cancel_goes_through_a_custom_jobs_own_cancel(engine: Engine) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    running = CancelAwareJob(forever)
    pending = CancelAwareJob(forever, condition=AfterAnother(job_id=running.id, statuses=("done",)))
    engine.submit(running, pending)
    on_loop(engine, running.wait_until_status("running", timeout=30))
    engine.cancel(running, pending)
    assert (running.status, pending.status) == ("cancelled", "cancelled")
    assert CancelAwareJob.cancelled_while == ["running", "pending"]


def test_a_custom_job_with_its_own_resource_runs_one_at_a_time(engine: Engine) -> None:
    jobs = [GPUJob(add, args=(i, i)) for i in range(4)]
    engine.submit(*jobs)
    engine.wait(timeout=30)
    assert [j.result() for j in jobs] == [0, 2, 4, 6]
    assert GPUS == {"free": 1, "most_in_use": 1, "in_use": 0}
    assert engine.resource.n_job == 20  # every slot given back


# ------------------------------------------------------------------ Job methods
def test_job_wait_until_status_retry_remain_and_rerun(engine: Engine) -> None:
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,), retries=2)
    assert job.retry_remain == 2 and job.task is None
    engine.submit(job)
    on_loop(engine, job.wait_until_status("running", timeout=30))
    with pytest.raises(InvalidStateError):
        on_loop(engine, job.rerun())  # check_status: a running job cannot be rerun
    with pytest.raises(asyncio.TimeoutError):
        on_loop(engine, job.wait_until(lambda j: j.status == "done", timeout=0.05))
    gate.set()
    on_loop(engine, job.join())
    assert job.status == "done" and job.stoped_time is not None
    failing = LocalJob(fail, retries=1)
    engine.submit(failing)
    engine.wait_job(failing, timeout=30)
    assert failing.status == "failed" and failing.retry_remain == 0
    on_loop(engine, failing.rerun(check_status=False))
    engine.wait_job(failing, timeout=30)
    assert failing.attempts == 2


def test_job_cancel_and_emit_are_coroutines_on_the_engine_loop(engine: Engine) -> None:
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,))
    engine.submit(job)
    on_loop(engine, job.cancel())
    gate.set()
    assert job.status == "cancelled"
    on_loop(engine, job.emit())  # hands the finished job back to its engine: it runs again
    engine.wait_job(job, timeout=30)
    assert job.status == "done"


def test_job_runnable_resolve_args_attrs_and_serialization(engine: Engine) -> None:
    up = LocalJob(add, args=(2, 3))
    engine.submit(up)
    engine.wait_job(up, timeout=30)
    down = LocalJob(add, args=(up.future, 1), condition=AfterAnother(job_id=up.id), owner="me")
    assert down.attrs == {"owner": "me"} and down.dep_job_ids == [up.id]
    assert not down.runnable()  # no engine yet
    down.engine = engine
    assert down.runnable()
    on_loop(engine, down.resolve_args())
    assert down.args == (5, 1)
    copy = Job.deserialization(bytes_=up.serialization())
    assert copy.id == up.id and copy.result() == 5


def test_wait_job_returns_the_result_as_upstream(engine: Engine) -> None:
    good, bad = LocalJob(add, args=(20, 22)), LocalJob(fail)
    engine.submit(good, bad)
    assert engine.wait_job(good, timeout=30) == 42 and engine.wait_job(bad, timeout=30) is None


def test_job_future_as_upstream(engine: Engine) -> None:
    seen: list[T.Any] = []
    errors: list[BaseException] = []

    async def record(value: int) -> None:  # coroutine callbacks are awaited, as upstream
        seen.append(("async", value))

    job = LocalJob(add, args=(1, 1), callback=seen.append)
    job.future.add_done_callback(record)
    bad = LocalJob(fail)
    bad.future.add_error_callback(errors.append)
    assert job.future.result() is None and job.future.done_callbacks == [seen.append, record]
    engine.submit(job, bad)
    engine.wait(timeout=30)
    engine.submit(LocalJob(add, args=(0, 0)))  # one more loop turn: the async callback has run
    engine.wait(timeout=30)
    assert job.future.result() == 2 and seen == [2, ("async", 2)]
    assert isinstance(bad.future.exception(), ValueError) and errors == [bad.future.exception()]
    detached = JobFuture("some-id")
    detached.set_result(7)
    detached.set_exception(KeyError("k"))
    assert detached.result() == 7 and isinstance(detached.exception(), KeyError)


def test_reprs_are_upstreams() -> None:
    condition = AfterAnother(job_id="x")
    job = LocalJob(print, retries=2, condition=condition)
    assert repr(job) == (f"<LocalJob status=created id={job.id} func=print condition=AfterAnother(job_id='x', "
                         "statuses=('done', 'failed', 'cancelled')) retry_remain=2>")
    command = SubprocessJob("echo hi")
    assert repr(command) == (f"<SubprocessJob status=created id={command.id} cmd=echo hi "
                             "target_dir=$current_dir base_class=ThreadJob>")
    assert command.attrs == {"cmd": "echo hi", "target_dir": "$current_dir"}
    both = AllSatisfied([EveryPeriod("1s"), AfterOthers(job_ids=["a"], mode="any")])
    assert isinstance(both, Combination)
    assert repr(both) == ("AllSatisfied(conditions=[EveryPeriod(period_str='1s', last_submitted_at=None, "
                          "immediate=False), AfterOthers(job_ids=['a'], statuses=('done', 'failed', 'cancelled'), "
                          "mode='any')])")


# --------------------------------------------------------------- Engine methods
def test_engine_cache_layout_is_upstreams(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with Engine(setting=EngineSetting(cache_path=str(cache))) as engine:
        assert not cache.exists()  # created when needed, not before
        assert engine.get_cache_dir() == cache and cache.is_dir()
        job = LocalJob(print, args=("out",), redirect_out_err=True)
        failing = ThreadJob(fail, args=("went wrong",), redirect_out_err=True)
        command = SubprocessJob("echo cmd-out; echo cmd-err >&2", redirect_out_err=True)
        engine.submit(job, failing, command)
        engine.wait(timeout=30)
    assert (cache / job.id / "stdout.txt").read_text() == "out\n"
    traceback = (cache / failing.id / "stderr.txt").read_text()  # a failure's traceback is captured, as upstream
    assert traceback.startswith("Traceback (most recent call last):") and "ValueError: went wrong" in traceback
    assert (cache / command.id / "stdout.txt").read_text() == "cmd-out\n"
    assert (cache / command.id / "stderr.txt").read_text() == "cmd-err\n"
    assert (cache / command.id / "command.sh").read_text() == "echo cmd-out; echo cmd-err >&2\n"


def test_engine_default_cache_dir_keeps_upstreams_structure_below_a_private_base() -> None:
    engine = Engine()
    path = engine.get_cache_dir()
    try:
        assert path.name == engine.id and path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
        assert LocalJob(print).cache_dir.parent != path  # not submitted: no engine dir
    finally:
        path.rmdir()


def test_engine_wait_async_setup_by_setting_resource_and_loop(engine: Engine) -> None:
    assert isinstance(engine, ExecutorObj) and isinstance(engine.resource, Resource)
    assert engine.resource.n_thread == float("inf") and engine.print_traceback is True
    engine.setting.print_traceback = False
    engine.setup_by_setting()
    assert engine.print_traceback is False
    gate = threading.Event()
    job = ThreadJob(gate.wait, args=(30,))
    engine.submit(job)
    select: T.Callable[[Jobs], list[Job]] = lambda jobs: jobs.running.values() + jobs.pending.values()  # noqa: E731
    assert on_loop(engine, engine.wait_async(timeout=0.05, select_jobs=select)) is False
    gate.set()
    assert on_loop(engine, engine.wait_async(timeout=30)) is True
    other = Engine()
    loop = asyncio.new_event_loop()
    try:
        other.loop = loop
        assert other.loop is loop
        with pytest.raises(RuntimeError, match="set engine.loop before start"):
            engine.loop = loop
    finally:
        loop.close()


# ------------------------------------------------------------------ the manager
def test_jobs_manager_methods_as_upstream(engine: Engine) -> None:
    jobs = [LocalJob(add, args=(i, 1)) for i in range(3)]
    engine.submit(*jobs)
    engine.wait(timeout=30)
    manager = engine.jobs
    assert manager.valid_statuses == valid_job_statuses == ["pending", "running", "failed", "done", "cancelled"]
    assert manager.done.values() + manager.failed.values() == jobs  # lists, as upstream
    assert isinstance(manager.done, JobStore) and manager.done.keys() == [j.id for j in jobs]
    moved = jobs[0]
    manager.move_job_store(moved, "cancelled")
    assert moved.status == "cancelled" and moved.id in manager.cancelled and len(manager.done) == 2
    manager.clear(["cancelled"])
    with pytest.raises(JobNotFoundError) as missing:
        manager.get_job_by_id(moved.id)
    assert isinstance(missing.value, (ExecutorError, KeyError))
    other = Engine()
    manager.set_engine(other)
    assert all(j.engine is other for j in manager)
    manager.done.clear()
    assert len(manager) == 0


def test_a_standalone_job_store_persists_like_upstreams(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "store")
    job = LocalJob(add, args=(1, 2), name="kept")
    store[job.id] = job
    again = JobStore.load_from_cache(tmp_path / "store")
    assert again.keys() == [job.id] and again[job.id].name == "kept"
    assert again.get_from_cache(job.id).name == "kept"
    assert again.pop(job.id).id == job.id and len(JobStore.load_from_cache(tmp_path / "store")) == 0


# ---------------------------------------------------------------- cron helpers
def test_cron_takes_upstreams_every_period_values(engine: Engine) -> None:
    from executor.engine.job.extend.cron import (
        CronJob, EveryPeriod as CronEveryPeriod, between_timepoint, between_weekday, daily, every, hourly,
    )

    assert CronEveryPeriod is EveryPeriod
    assert isinstance(daily, EveryPeriod) and daily.period_str == "1d" and hourly.period_str == "1h"
    assert repr(daily) == "EveryPeriod(period_str='1d', last_submitted_at=None, immediate=False)"
    now = datetime.now()
    window = between_timepoint(now - timedelta(hours=1), now + timedelta(hours=1))
    assert window.satisfy(engine) and between_weekday("mon", "sun").satisfy(engine)
    hits: list[int] = []
    cron = CronJob(lambda: hits.append(1), EveryPeriod("10ms", immediate=True), "local", max_fires=2)
    by_every = CronJob(lambda: hits.append(2), every("10ms"), job_type="local", max_fires=1)
    engine.submit(cron, by_every)
    engine.wait(timeout=30)
    assert sorted(hits) == [1, 1, 2] and cron.status == "done"


def test_job_types_share_upstreams_error_base() -> None:
    with pytest.raises(ExecutorError):
        LocalJob(print).result()
    assert issubclass(InvalidStateError, RuntimeError)  # and ours, as before
    error = InvalidStateError(LocalJob(print), ["done"])
    assert error.valid_status == ["done"] and "should be one of ['done']" in str(error)


def test_process_jobs_take_upstreams_arguments_positionally(engine: Engine) -> None:
    results: list[int] = []
    job = ProcessJob(add, (2, 2), None, results.append, None, 0, 0.0, "adder")
    engine.submit(job)
    engine.wait_job(job, timeout=60)
    assert job.name == "adder" and job.result() == 4 and results == [4]
