"""The process pool's loop: on its own thread while the controller collects, on the controller's while tests run."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import warnings

import pytest

from pytest_executor.backends._pool_loop import PARKED_THREAD, POOL_THREAD, PoolLoop


def _pool_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name in (POOL_THREAD, PARKED_THREAD)]


def test_callbacks_run_on_the_pool_thread_until_the_controller_takes_the_loop_over() -> None:
    pool_loop = PoolLoop()
    try:
        pool_loop.call_soon(lambda: pool_loop.post(("ran on", threading.current_thread().name)))
        assert pool_loop.next_post(30) == ("ran on", "executor-pool")

        pool_loop.take_over()
        assert _pool_threads() == [PARKED_THREAD]
        pool_loop.call_soon(lambda: pool_loop.post(("ran on", threading.current_thread().name)))
        assert pool_loop.next_post(30) == ("ran on", threading.current_thread().name)
        assert pool_loop.next_post(0) is None  # nothing more: one round, no wait
    finally:
        pool_loop.close()


def test_the_controller_waits_in_the_loop_until_a_timer_or_a_task_posts() -> None:
    pool_loop = PoolLoop()
    pool_loop.take_over()
    try:
        pool_loop.loop.call_later(0.01, pool_loop.post, ("timer",))
        assert pool_loop.next_post(30) == ("timer",)

        async def answer() -> None:
            await asyncio.sleep(0.01)
            pool_loop.post(("task",))

        pool_loop.call_soon(lambda: asyncio.ensure_future(answer()))
        assert pool_loop.next_post(30) == ("task",)
    finally:
        pool_loop.close()


@pytest.mark.parametrize("on_thread", [True, False], ids=["thread", "taken-over"])
def test_run_returns_what_a_coroutine_that_cancels_every_other_task_returns(on_thread: bool) -> None:
    """The pool's shutdown cancels every task but its own: run() must not put a task of its own around it."""
    pool_loop = PoolLoop()
    if not on_thread:
        pool_loop.take_over()

    async def shut_down() -> str:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0)
        return "done"

    try:
        assert pool_loop.run(shut_down(), 30) == "done"
        with pytest.raises(TimeoutError):
            pool_loop.run(asyncio.sleep(30), 0.01)
    finally:
        pool_loop.close()


ENDS_WITH_ITS_PARENT_THREAD = """
import ctypes, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, as a python -c zygote asks for
print("ready", flush=True)
for line in sys.stdin:
    print(line.strip(), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_process_started_on_the_pool_thread_outlives_the_take_over() -> None:
    """Linux ends such a process when the *thread* that started it ends: the thread parks, it does not end."""
    pool_loop = PoolLoop()
    pool_loop.call_soon(lambda: pool_loop.post((subprocess.Popen(
        [sys.executable, "-c", ENDS_WITH_ITS_PARENT_THREAD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True),)))
    post = pool_loop.next_post(30)
    assert post is not None
    child: subprocess.Popen[str] = post[0]
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        pool_loop.take_over()
        child.stdin.write("still here?\n")
        child.stdin.flush()
        assert child.stdout.readline() == "still here?\n"  # EOF ("") had it been killed
    finally:
        pool_loop.close()
        child.kill()
        child.wait()
    assert _pool_threads() == []


def test_after_close_calls_are_dropped_and_coroutines_closed_not_left_unawaited() -> None:
    pool_loop = PoolLoop()
    pool_loop.close()
    assert _pool_threads() == []
    pool_loop.call_soon(pool_loop.post, ("late",))  # the run is over: nothing to run it on
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        assert pool_loop.run(asyncio.sleep(0), 1) is None
        gc.collect()


CONTROLLER_THREADS = """
import json, os, threading

def pytest_runtest_logreport(report):
    if report.when == "call" and "PYTEST_EXECUTOR_WORKER" not in os.environ:  # the controller's replay
        names = sorted(thread.name for thread in threading.enumerate())
        with open("threads.jsonl", "a") as out:
            out.write(json.dumps(names) + "\\n")
"""


def test_while_the_tests_run_the_pool_loop_is_not_on_a_thread_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONTROLLER_THREADS)
    pytester.makepyfile(test_some="\n".join(f"def test_{n}():\n    pass\n" for n in range(6)))
    result = pytester.runpytest_subprocess("--executor-backend=process", "--executor-workers=2", "-p", "no:xdist")
    result.assert_outcomes(passed=6)
    seen = (pytester.path / "threads.jsonl").read_text().splitlines()
    assert len(seen) == 6
    assert all(POOL_THREAD not in json.loads(line) for line in seen), seen
