"""Worker states, routing (worker=, affinity=), crash errors and stack-dump timeouts of the process pool.

Real worker processes; files written by the workers are the events the tests wait on."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from executor.engine import Engine, EngineSetting, ProcessJob, WorkerState
from executor.engine.job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError

from _engine_helpers import pid, pid_alive, touch_then_wait, wait_for_file, wait_until

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def append_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def load_model(log: str) -> dict[str, Any]:
    """A state's setup: logs each run, returns the 'model'."""
    append_line(log, f"setup {os.getpid()}")
    return {"weights": 42, "pid": os.getpid()}


def unload_model(log: str, model: dict[str, Any]) -> None:
    append_line(log, f"teardown {model['pid']}")


def predict(model: dict[str, Any], x: int) -> tuple[int, int]:
    return model["weights"] + x, os.getpid()


def broken_setup(log: str) -> None:
    append_line(log, "setup attempt")
    raise ValueError("the model file is corrupt")


def host_session(log: str) -> Callable[[Callable[..., None]], None]:
    def host(serve: Callable[..., None]) -> None:
        append_line(log, "host start")
        serve({"session": os.getpid()}, info={"collected": ["a", "b"], "pid": os.getpid()})
        append_line(log, "host end")

    return host


def host_that_fails(serve: Callable[..., None]) -> None:
    raise RuntimeError("collection failed")


def session_pid(session: dict[str, int]) -> int:
    return session["session"]


def crash_with(sig: int) -> None:
    print("about to crash", flush=True)
    os.kill(os.getpid(), sig)


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Engine(EngineSetting(max_process_jobs=2, cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


def test_state_is_set_up_once_per_worker_used_by_every_job_and_torn_down_at_stop(tmp_path: Path) -> None:
    log = tmp_path / "log"
    state = WorkerState(lambda: load_model(str(log)), lambda m: unload_model(str(log), m), name="model",
                        max_workers=1)
    with Engine(EngineSetting(max_process_jobs=2, cache_path=str(tmp_path / "cache"))) as engine:
        jobs = [ProcessJob(predict, args=(i,), state=state) for i in range(6)]
        engine.submit(*jobs)
        assert engine.wait(timeout=60)
        results = [j.result() for j in jobs]
        holder = results[0][1]
        assert results == [(42 + i, holder) for i in range(6)]
        assert lines(log) == [f"setup {holder}"]
        assert {j.worker_pid for j in jobs} == {holder}
        assert engine.process_pool.state_info(state) == {jobs[0].worker_id: None}
    assert lines(log) == [f"setup {holder}", f"teardown {holder}"]


def test_a_failing_setup_fails_the_waiting_jobs_with_its_traceback_once(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    state = WorkerState(lambda: broken_setup(str(log)), name="model")
    first = ProcessJob(predict, args=(1,), state=state)
    engine.submit(first)
    assert engine.wait(timeout=60)
    error = first.exception()
    assert isinstance(error, WorkerStateError)
    assert "the setup of worker state 'model' failed" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert "the model file is corrupt" in str(error.__cause__.__cause__)  # the worker's traceback
    later = [ProcessJob(predict, args=(i,), state=state) for i in range(3)]
    engine.submit(*later)
    assert engine.wait(timeout=60)
    assert all(isinstance(j.exception(), WorkerStateError) for j in later)
    assert lines(log) == ["setup attempt"]  # no respawn loop


def test_hosted_state_serves_on_the_host_stack_sends_info_and_finishes_at_stop(tmp_path: Path) -> None:
    log = tmp_path / "log"
    state = WorkerState(host=host_session(str(log)), name="session")
    with Engine(EngineSetting(max_process_jobs=2, cache_path=str(tmp_path / "cache"))) as engine:
        jobs = [ProcessJob(session_pid, state=state) for _ in range(3)]
        engine.submit(*jobs)
        assert engine.wait(timeout=60)
        for job in jobs:
            assert job.result() == job.worker_pid
            assert job.worker_info == {"collected": ["a", "b"], "pid": job.worker_pid}
        info = engine.process_pool.state_info(state)
        assert set(info) == {j.worker_id for j in jobs}
        assert lines(log).count("host start") == len(info)
    assert wait_until(lambda: lines(log).count("host end") == len(info), timeout=30)


def test_a_host_that_fails_before_serving_fails_the_job(engine: Engine) -> None:
    job = ProcessJob(session_pid, state=WorkerState(host=host_that_fails, name="session"))
    engine.submit(job)
    assert engine.wait(timeout=60)
    error = job.exception()
    assert isinstance(error, WorkerStateError) and "collection failed" in str(error)


def test_a_state_with_capture_output_keeps_its_workers_output_from_the_engines(
        engine: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    loud = WorkerState(lambda: None, name="loud", capture_output=True)
    job = ProcessJob(lambda _value: (print("kept in the worker", flush=True), os._exit(3)), state=loud)
    engine.submit(job)
    assert engine.wait(timeout=60)
    error = job.exception()
    assert isinstance(error, WorkerCrashedError) and (error.exitcode, error.signal) == (3, None)
    assert error.output == "kept in the worker\n"
    assert "kept in the worker" not in capfd.readouterr().out


def test_worker_and_affinity_route_jobs_to_the_same_worker(engine: Engine, tmp_path: Path) -> None:
    held = [ProcessJob(touch_then_wait, args=(str(tmp_path / f"s{i}"), str(tmp_path / "go"))) for i in range(2)]
    engine.submit(*held)
    for i in range(2):
        wait_for_file(str(tmp_path / f"s{i}"))
    (tmp_path / "go").write_text("")
    assert engine.wait(timeout=60)
    ids = {j.worker_id: j.worker_pid for j in held}
    assert len(ids) == 2 and engine.process_pool.worker_ids() == ids
    for wid, wpid in ids.items():
        pinned = [ProcessJob(pid, worker=wid) for _ in range(3)] + [ProcessJob(pid, worker=wpid)]
        for job in pinned:
            engine.submit(job)
            assert engine.wait(timeout=60)
        assert {j.result() for j in pinned} == {wpid}
    by_key: dict[str, set[int]] = {"a": set(), "b": set()}
    for key in ["a", "b"] * 4:
        job = ProcessJob(pid, affinity=key)
        engine.submit(job)
        assert engine.wait(timeout=60)
        by_key[key].add(job.result())
    assert all(len(pids) == 1 for pids in by_key.values())


def test_a_crash_reports_exit_status_and_signal_and_the_worker_is_replaced(engine: Engine) -> None:
    job = ProcessJob(crash_with, args=(signal.SIGSEGV,))
    engine.submit(job)
    assert engine.wait(timeout=60)
    error = job.exception()
    assert isinstance(error, WorkerCrashedError)
    assert (error.exitcode, error.signal) == (-signal.SIGSEGV, "SIGSEGV")
    assert "about to crash" in error.output and "Fatal Python error: Segmentation fault" in error.output
    assert error.worker_pid == job.worker_pid and error.worker_id == job.worker_id
    after = ProcessJob(pid)
    engine.submit(after)
    assert engine.wait(timeout=60)
    assert after.result() != job.worker_pid and not pid_alive(job.worker_pid or 0)


def test_a_timed_out_attempt_stops_its_worker_with_sigabrt(engine: Engine, tmp_path: Path) -> None:
    started = str(tmp_path / "started")
    job = ProcessJob(touch_then_wait, args=(started, str(tmp_path / "never")))
    job.engine = engine
    loop = engine.loop

    async def attempt() -> BaseException:
        task = asyncio.ensure_future(job.run_function())
        await loop.run_in_executor(None, wait_for_file, started)
        job._timed_out = True  # what the engine sets before cancelling a timed-out attempt
        task.cancel()
        try:
            await task
        except BaseException as exc:
            return exc
        raise AssertionError("the attempt did not fail")

    error = asyncio.run_coroutine_threadsafe(attempt(), loop).result(timeout=60)
    assert isinstance(error, WorkerTimeoutError)
    assert (error.signal, error.exitcode) == ("SIGABRT", -signal.SIGABRT)
    assert "Fatal Python error: Aborted" in error.output and "touch_then_wait" in error.output
    assert error.worker_pid == job.worker_pid
    assert wait_until(lambda: not pid_alive(job.worker_pid or 0))

