"""A hosted state that drives its own loop: ``serve(..., until=)`` again and again, jobs that reply
later (``defer_reply``), a host that returns on its own, and the worker id it learns.

The shape of a pytest session hosted in a worker: each job hands the host one item and the host
answers it once the item ran, tearing the previous one down only when the next is known."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from typing import Any, Callable

import pytest

from executor.engine import WorkerState
from executor.engine.backend.process import ProcessPool
from executor.engine.state import defer_reply, worker_id

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks a zygote")]


class Loop:
    """The hosted value: a queue of items the host's own loop takes."""

    def __init__(self) -> None:
        self.items: deque[tuple[Any, Callable[[Any], None]]] = deque()


def give(loop: Loop, item: Any) -> None:
    """A job: hand ``item`` to the host's loop, which replies once it handled it."""
    loop.items.append((item, defer_reply()))


def host(serve: Callable[..., bool]) -> list[str]:
    """Handle items one by one; each reply also says what happened since the previous reply."""
    loop = Loop()
    log: list[str] = [f"worker {worker_id()} pid {os.getpid()}"]
    info = {"worker": worker_id(), "pid": os.getpid()}
    more = serve(loop, info, until=lambda: bool(loop.items))
    previous = None
    while more:
        item, reply = loop.items.popleft()
        if item == "stop":
            reply(log + [f"teardown {previous}"])
            return log
        if previous is not None:
            log.append(f"teardown {previous}")
        log.append(f"run {item}")
        reply(list(log))
        log.clear()
        previous = item
        more = serve(loop, until=lambda: bool(loop.items))
    return log


def test_a_host_serves_again_with_until_and_its_jobs_reply_later() -> None:
    async def main() -> None:
        pool = ProcessPool(1, asyncio.get_running_loop(), prefetch=1, eager=True)
        state = WorkerState(host=host, name="items")
        try:
            replies = await asyncio.gather(*(pool.run(give, (n,), {}, state=state) for n in range(3)))
            (wid, info), = pool.state_info(state).items()
            assert info["worker"] == wid
            assert replies[0][1:] == ["run 0"] and replies[0][0].startswith(f"worker {wid} pid ")
            assert replies[1:] == [["teardown 0", "run 1"], ["teardown 1", "run 2"]]
            assert await pool.run(give, ("stop",), {}, state=state) == ["teardown 2"]
            # The host returned on its own (no reply of its own); dropping it is answered by the worker.
            await pool.drop_state(state)
            assert await pool.run(os.getpid, (), {}) == info["pid"]  # the worker serves on
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_defer_reply_outside_a_worker_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="only available inside a job"):
        defer_reply()
    assert worker_id() is None or isinstance(worker_id(), int)
