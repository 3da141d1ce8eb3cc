"""The engine's bridge between threads and its event loop, and the state its layers share.

Every state change of an engine happens on its loop: the loop of its own daemon
thread in sync use (``start()``), or the caller's running loop in async use
(bound by the first ``await``).  Calls from other threads hop onto it here:
``_call_on_loop`` (a sync function, blocking), ``_call_on_loop_async`` (a
coroutine, blocking), ``_wait_serving`` (a blocking wait that meanwhile runs
CallerJob bodies, see :mod:`executor.engine._caller`) and the ``_on_loop_async*``
forms for coroutines on other loops.

The engine is built in layers, one module each, every layer a base class of the
next: this bridge, job lifecycle (:mod:`._lifecycle`), the fast path
(:mod:`._fast_path`), submission and scheduling (:mod:`._submitting`), cancel
and wait (:mod:`._waiting`), and :class:`~executor.engine.core.Engine` on top.
:class:`LoopBridge` declares the state they share (set in ``Engine.__init__``).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import sys
import threading
import typing as T
import weakref
from pathlib import Path

from ._caller import CallerLane
from .job.base import Job

if T.TYPE_CHECKING:  # pragma: no cover
    from ._scheduler import Scheduler
    from ._setting import EngineSetting
    from .backend.thread import ThreadBackend
    from .job.utils import JobStatusType
    from .manager import Jobs

__all__ = ["LoopBridge", "check_jobs", "live_engines", "release_command_watchdog"]

StatusListener = T.Callable[[Job, "JobStatusType"], None]
"""``listener(job, status)``: told of every status change, on the engine's loop thread."""

live_engines: "weakref.WeakSet[LoopBridge]" = weakref.WeakSet()
"""Engines whose loop runs (stopped at interpreter exit)."""


@atexit.register
def _stop_live_engines() -> None:
    for engine in list(live_engines):
        try:
            engine.stop()
        except Exception:  # best effort at interpreter exit
            pass


def release_command_watchdog() -> None:
    """Let the watchdog of running commands go with the last engine, if no command runs any more."""
    # looked up, not imported: most programs never start a command
    reaper = sys.modules.get("executor.engine.job.extend._reaper")
    if reaper is not None:
        reaper.close_idle_guard()


def check_jobs(jobs: T.Iterable[object]) -> None:
    """Refuse anything that is not a Job, naming it."""
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(f"expected Job objects, got {type(job).__name__}: {job!r}")


class LoopBridge:
    """The engine's shared state and its hops between threads and the loop."""

    id: str
    setting: "EngineSetting"
    jobs: "Jobs"
    print_traceback: bool
    _cache_dir: T.Optional[Path]  # see Engine.cache_dir
    _loop: T.Optional[asyncio.AbstractEventLoop]
    _loop_thread_id: T.Optional[int]
    _thread: T.Optional[threading.Thread]
    _driver: T.Optional[int]  # ident of the thread driving the loop (start(loop_thread=False)), else None
    _caller_queue: collections.deque[Job]  # CallerJobs started on a driven engine, run by its driver
    _stopping: bool
    _sched: "Scheduler[Job]"
    _backends: dict[str, T.Any]  # open backends by resource kind (see backend/_registry.py)
    _spare_zygote: T.Any  # a zygote forked by start() for the process pool, or None
    _idle_waiters: list[asyncio.Future]
    _timer: T.Optional[asyncio.TimerHandle]
    _timer_when: T.Optional[float]
    _pumping: bool
    _submitting: bool
    _inline: collections.deque[Job]  # started plain calls, run in batches by one loop callback
    _inline_scheduled: bool
    _thread_results: list[Job]  # fast-path ThreadJobs whose call returned, finished in bulk per batch
    _default_tokens: list[T.Any]
    _status_listeners: list[StatusListener]
    _callers: CallerLane

    if T.TYPE_CHECKING:  # pragma: no cover  (defined by the layers above)
        @property
        def thread_backend(self) -> "ThreadBackend": ...

        def stop(self) -> None: ...

        def _release_closed_loop(self) -> None: ...

        def _pump(self) -> None: ...

        def _drive(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any: ...

    def _in_loop_thread(self) -> bool:
        loop = self._loop
        if loop is None:
            return False
        if self._driver is not None:
            return threading.get_ident() == self._driver
        if self._thread is not None:
            return threading.get_ident() == self._loop_thread_id
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Adopt the caller's running loop (async use) if the engine has no live loop."""
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed() and self._loop.is_running():
            return  # keep the running one; callers hop onto it
        self._release_closed_loop()
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self._stopping = False
        live_engines.add(self)

    def _call_on_loop(self, fn: T.Callable[..., T.Any], *args: T.Any) -> T.Any:
        """Run a sync function on the loop thread and return its result (re-raising)."""
        loop = self._loop
        if self._driver is not None and self._in_loop_thread():
            return fn(*args)
        if loop is None or not loop.is_running():
            raise RuntimeError("the engine is not started")
        if self._in_loop_thread():
            return fn(*args)
        cf: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                cf.set_result(fn(*args))
            except BaseException as exc:
                cf.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return cf.result()

    def _loop_to_block_on(self) -> asyncio.AbstractEventLoop:
        """The running engine loop, which this (other) thread may block on; else a RuntimeError that says why not."""
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the engine is not started: use `with Engine()` or engine.start()")
        if self._in_loop_thread():
            raise RuntimeError("this blocking call would deadlock the engine loop; "
                               "use the async form (await engine.join(...)) instead")
        return loop

    def _call_on_loop_async(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any:
        """Run a coroutine function on the loop from another thread and block for its result."""
        loop = self._loop_to_block_on()
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), loop).result()

    async def _on_loop_async(self, fn: T.Callable[..., T.Any], *args: T.Any) -> T.Any:
        """Run a sync function on the engine loop from any coroutine."""
        running = asyncio.get_running_loop()
        self._bind(running)
        if running is self._loop:
            return fn(*args)
        assert self._loop is not None

        async def call() -> T.Any:
            return fn(*args)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._loop))

    async def _on_loop_async_coro(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any:
        """Await a coroutine function on the engine loop from any coroutine."""
        running = asyncio.get_running_loop()
        self._bind(running)
        if running is self._loop:
            return await coro_fn(*args)
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop))

    def _wait_serving(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any:
        """Like :meth:`_call_on_loop_async`, running CallerJob bodies on this thread while it waits."""
        if self._driver is not None:
            if threading.get_ident() != self._driver:
                raise RuntimeError("this engine's loop is driven by the thread that started it "
                                   "(start(loop_thread=False)); wait for it from that thread")
            return self._drive(coro_fn, *args)
        loop = self._loop_to_block_on()
        done = asyncio.run_coroutine_threadsafe(coro_fn(*args), loop)
        try:
            self._callers.serve_until(done)
        except BaseException:  # Ctrl-C in a body: stop waiting, as a plain blocking wait would
            done.cancel()
            raise
        return done.result()

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._loop_thread_id = threading.get_ident()
        loop.call_soon(ready.set)
        loop.run_forever()
