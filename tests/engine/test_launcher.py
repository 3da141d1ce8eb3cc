"""Launchers: bare and parametrised decorators, sync/async, default engine, cmd2func, bad input."""

from __future__ import annotations

import asyncio

import pytest

from executor.engine import Engine, LocalJob, ProcessJob, ThreadJob
from executor.engine.launcher import (
    AsyncLauncher, SyncLauncher, get_default_engine, launcher, set_default_engine,
)
from executor.engine.launcher.core import is_cmd2func, resolve_job_type

from _engine_helpers import add


def test_bare_decorator_makes_a_process_launcher() -> None:
    @launcher
    def mul(a: int, b: int) -> int:
        return a * b

    assert isinstance(mul, SyncLauncher) and mul.__name__ == "mul"
    with Engine() as engine:
        job = mul.submit(3, 4)
        assert isinstance(job, ProcessJob) and engine.jobs.get_job_by_id(job.id) is job
        engine.wait_job(job, timeout=30)
        assert job.result() == 12
        assert mul(2, 5) == 10


@pytest.mark.parametrize("job_type, cls", [("local", LocalJob), ("thread", ThreadJob), ("process", ProcessJob)])
def test_job_types_and_job_kwargs(job_type: str, cls: type) -> None:
    lau = launcher(add, job_type=job_type, name="adder", retries=1)
    with Engine():
        job = lau.submit(1, b=2)
        assert type(job) is cls and job.name == "adder" and job.retries == 1
        job.wait(timeout=30)
        assert job.result() == 3


def test_call_raises_the_job_exception() -> None:
    @launcher(job_type="thread")
    def boom() -> None:
        raise KeyError("launched")

    with Engine():
        with pytest.raises(KeyError, match="launched"):
            boom()


def test_with_engine_is_the_default_and_nesting_restores() -> None:
    with Engine() as outer:
        assert get_default_engine() is outer
        with Engine() as inner:
            assert get_default_engine() is inner
        assert get_default_engine() is outer


def test_set_default_engine() -> None:
    engine = Engine()
    set_default_engine(engine)
    try:
        assert get_default_engine() is engine
        engine.start()
        assert launcher(add, job_type="local")(1, 1) == 2
    finally:
        engine.stop()
    with pytest.raises(TypeError, match="Engine"):
        set_default_engine("engine")  # type: ignore[arg-type]


def test_async_launcher_and_conversions() -> None:
    @launcher(async_mode=True, job_type="thread")
    def inc(x: int) -> int:
        return x + 1

    assert isinstance(inc, AsyncLauncher)
    sync = inc.to_sync()
    assert isinstance(sync, SyncLauncher) and isinstance(sync.to_async(), AsyncLauncher)

    async def main() -> tuple[int, int]:
        engine = Engine()
        inc.engine = engine
        job = await inc.submit(1)
        await job.join()
        value = await inc(10)
        engine.stop()
        return job.result(), value

    assert asyncio.run(main()) == (2, 11)


def test_cmd2func_objects_make_subprocess_jobs() -> None:
    from cmd2func import cmd2func

    @cmd2func
    def cmd_add(a: int, b: int) -> str:
        return f"python -c 'print({a} + {b})'"

    assert is_cmd2func(cmd_add) and not is_cmd2func(add)
    job = launcher(cmd_add).create_job((1, 2), {})
    assert isinstance(job, resolve_job_type("subprocess"))


@pytest.mark.parametrize("call, match", [
    (lambda: launcher(42), "callable"),
    (lambda: launcher(add, job_type="gpu"), "job_type"),
    (lambda: launcher(add, async_mode="yes"), "async_mode"),
])
def test_bad_input(call: object, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("call, match", [
    (lambda: launcher(add, engine="my engine"), "engine must be an Engine"),
    (lambda: launcher(add, job_type="thread", retires=3), r"unknown job option\(s\) \['retires'\].*retries"),
    (lambda: launcher(job_type="local", nmae="x")(add), r"\['nmae'\].*name"),
])
def test_bad_options_are_refused_when_the_launcher_is_made(call: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        call()  # type: ignore[operator]


def test_command_launchers_check_the_options_of_the_job_they_make() -> None:
    from cmd2func import cmd2func

    @cmd2func
    def echo(text: str) -> str:
        return f"echo {text}"

    launcher(echo, record_cmd=True, target_dir="$cache_dir")  # SubprocessJob options are fine
    with pytest.raises(TypeError, match=r"\['ready_timeout'\]"):
        launcher(echo, ready_timeout=3)  # a WebappJob option, but this launcher makes SubprocessJobs


def test_launcher_engine_setter_refuses_what_is_not_an_engine() -> None:
    lau = launcher(add, job_type="local")
    with pytest.raises(TypeError, match="engine must be an Engine"):
        lau.engine = "engine"  # type: ignore[assignment]


def test_cmd2func_launchers_take_subprocess_job_classes_and_base_class_once() -> None:
    from cmd2func import cmd2func

    from executor.engine.job.extend import SubprocessJob

    @cmd2func
    def echo(text: str) -> str:
        return f"echo {text}"

    assert isinstance(launcher(echo, job_type=SubprocessJob).create_job(("hi",), {}), SubprocessJob)
    on_local = launcher(echo, job_type="subprocess", base_class=LocalJob).create_job(("hi",), {})
    assert isinstance(on_local, SubprocessJob) and isinstance(on_local, LocalJob)
    with pytest.raises(TypeError, match="base_class= and job_type='process'"):
        launcher(echo, job_type="process", base_class=LocalJob)
