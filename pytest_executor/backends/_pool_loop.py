"""Where the process pool's event loop runs: on a thread of its own while the controller collects, then on the controller's.

The pool's workers start and collect while the controller collects, so its
loop starts on a thread (:class:`PoolLoop`).  Once the controller runs the
tests, it has nothing to do while it waits for the workers' answers but run
that loop itself: :meth:`PoolLoop.take_over` stops the thread, and from then
on the loop runs inside :meth:`PoolLoop.next_post`, until something is
posted.  With the loop on one thread, a wake-up is no longer a hand-off
between two threads of one process (a queue, a self-pipe write, the GIL
changing hands), and on a loaded machine the two threads no longer wait on
each other for the GIL.

The thread itself stays, parked on an event until :meth:`PoolLoop.close`:
processes it started (a ``python -c`` zygote, when the controller could not
fork one) asked Linux to end them when their parent *thread* ends
(``PR_SET_PDEATHSIG``), so it must outlive them.

What the loop's callbacks have to say to the controller they ``post``; the
controller takes posts with :meth:`PoolLoop.next_post`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable, final

if TYPE_CHECKING:
    from executor.engine.backend.process import ProcessPool

POOL_THREAD = "executor-pool"
"""Name of the thread that runs the pool's loop until the controller takes it over."""
PARKED_THREAD = "executor-pool-parked"
"""Its name once parked: alive, running nothing (see the module's doc)."""


@final
class PoolLoop:
    """An asyncio loop that a thread runs until the controller takes it over; plus the posts of its callbacks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._posts: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._off_thread = threading.Event()  # the thread no longer runs the loop (taken over, or closed)
        self._released = threading.Event()  # close(): the parked thread may end
        self._turning = False
        self._thread = threading.Thread(target=self._serve_then_park, name=POOL_THREAD, daemon=True)
        self._thread.start()

    def _serve_then_park(self) -> None:
        """The thread's body: run the loop until taken over, then wait for :meth:`close` (see the module's doc)."""
        try:
            self.loop.run_forever()
        finally:
            threading.current_thread().name = PARKED_THREAD
            self._off_thread.set()
        self._released.wait()

    def post(self, item: tuple[Any, ...]) -> None:
        """Hand ``item`` to the controller (called on the loop)."""
        self._posts.put(item)
        if self._turning:
            self.loop.stop()  # the controller waits in next_post: back to it

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop (from the controller's thread); nothing once it is closed."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            if self._off_thread.is_set():
                self.loop.call_soon(callback, *args)
            else:
                self.loop.call_soon_threadsafe(callback, *args)

    def take_over(self) -> None:
        """Stop the loop on its thread (which parks): from now on it runs in :meth:`next_post`, on the caller's."""
        if not self._off_thread.is_set():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._off_thread.wait()

    def next_post(self, wait: float | None) -> tuple[Any, ...] | None:
        """The next post, waiting up to ``wait`` seconds (None: until there is one); None if none came."""
        if not self._off_thread.is_set():
            try:
                return self._posts.get(timeout=wait)
            except queue.Empty:
                return None
        with contextlib.suppress(queue.Empty):
            return self._posts.get_nowait()
        self.turn(wait)
        with contextlib.suppress(queue.Empty):
            return self._posts.get_nowait()
        return None

    def turn(self, wait: float | None = 0.0) -> None:
        """Run the loop here until something is posted or ``wait`` seconds passed (0: one round)."""
        loop = self.loop
        if not self._off_thread.is_set() or loop.is_closed() or loop.is_running():
            return
        timer = None
        if (wait is not None and wait <= 0) or not self._posts.empty():
            loop.call_soon(loop.stop)
        elif wait is not None:
            timer = loop.call_later(wait, loop.stop)
        self._turning = True
        try:
            loop.run_forever()
        finally:
            self._turning = False
            if timer is not None:
                timer.cancel()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run ``coro`` on the loop to its end (from outside the loop), for up to ``timeout`` seconds."""
        if self.loop.is_closed():
            coro.close()
            return None
        if not self._off_thread.is_set():
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
        task = self.loop.create_task(coro)  # itself the current task (no wrapper: coro may cancel the others)
        timer = self.loop.call_later(timeout, task.cancel)
        try:
            return self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            raise TimeoutError(f"not done within {timeout} s") from None
        finally:
            timer.cancel()

    def shut_down(self, pool: ProcessPool, timeout: float) -> None:
        """Shut ``pool`` down on the loop, then let the calls still waiting on it end (they were cancelled)."""
        self.run(_shut_down(pool), timeout)

    def close(self) -> None:
        """Stop the loop (on its thread, if not taken over), let the thread end, and close the loop."""
        if not self._off_thread.is_set():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
        self._released.set()
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self.loop.close()


async def _shut_down(pool: ProcessPool) -> None:
    """See :meth:`PoolLoop.shut_down`; runs on the loop."""
    pool.shutdown()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
