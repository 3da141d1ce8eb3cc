"""The thread backend: reused worker threads per engine, results handed back to the loop in batches.

A call's result reaches the engine loop without a ``concurrent.futures.Future``
or a chained asyncio future per call: the worker appends it to a deque and,
unless a wake-up is already pending, schedules one drain on the loop
(``call_soon_threadsafe``).  Calls finishing before the loop wakes up are
drained by that same callback.

Python threads cannot be killed.  A call whose job was cancelled is
*abandoned* (:meth:`ThreadBackend.abandon`): its thread leaves the pool (a
new one takes its place when needed), finishes the call on its own as a
daemon thread, drops the result and ends; ``shutdown`` does not wait for it.
A call abandoned before a thread took it never runs.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import queue
import threading
import typing as T

__all__ = ["ThreadBackend", "ThreadCall"]

ThreadCall = tuple  # (func, args, kwargs, on_done, target): see ThreadBackend.call
"""One queued call; its identity tells a late completion from the current attempt's."""

OnDone = T.Callable[[T.Any, bool, T.Any], None]
"""Completion callback on the loop thread: ``on_done(call, ok, value_or_exception)``."""


def _settle_future(call: ThreadCall, ok: bool, value: T.Any) -> None:
    fut: asyncio.Future = call[4]
    if fut.done():  # the awaiting side was cancelled: drop the result
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _settle_concurrent(call: ThreadCall, ok: bool, value: T.Any) -> None:
    cf: concurrent.futures.Future = call[4]
    if not cf.set_running_or_notify_cancel():
        return
    if ok:
        cf.set_result(value)
    else:
        cf.set_exception(value)


class ThreadBackend:
    """Runs calls on up to ``max_workers`` reused threads bound to one event loop.

    Args:
        max_workers: threads at most (started on demand, kept until shutdown).
        loop: the engine loop, where completion callbacks run.
        after_batch: called on the loop after each drained batch of completions.
    """

    def __init__(self, max_workers: int, loop: T.Optional[asyncio.AbstractEventLoop] = None,
                 after_batch: T.Optional[T.Callable[[], None]] = None) -> None:
        self.max_workers = max_workers
        self._loop = loop
        self._after_batch = after_batch
        self._calls: "queue.SimpleQueue[T.Optional[ThreadCall]]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # released by a worker each time it waits for work
        self._completed: collections.deque[tuple[ThreadCall, bool, T.Any]] = collections.deque()
        self._wake_pending = False
        self._closed = False
        # which worker runs which call, so that abandon() can let the right thread go
        self._lock = threading.Lock()
        self._busy: dict[threading.Thread, ThreadCall] = {}
        self._abandoned: set[threading.Thread] = set()
        self._dropped: set[int] = set()  # id()s of queued calls abandoned before they started

    # ---------------------------------------------------------------- calls
    def call(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict,
             on_done: OnDone, target: T.Any) -> ThreadCall:
        """Queue ``func(*args, **kwargs)``; ``on_done(call, ok, value)`` runs on the loop afterwards.

        ``target`` is stored as the call's last item (``call[4]``) for ``on_done``.
        Coroutines returned by ``func`` are run to completion in the worker thread.
        """
        if self._closed:
            raise RuntimeError("the thread backend is shut down")
        item = (func, args, kwargs, on_done, target)
        if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
            self._start_worker()
        self._calls.put(item)
        return item

    async def run(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> T.Any:
        """Run the call in a worker thread and return its result.

        On cancellation the awaiting side stops waiting; the thread itself cannot
        be interrupted and finishes its call, whose result is dropped.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # not the engine loop: hand back through a thread-safe future
            return await asyncio.wrap_future(self.submit(func, *args, **kwargs))
        fut = loop.create_future()
        item = self.call(func, args, kwargs, _settle_future, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            self.abandon(item)
            raise

    def submit(self, fn: T.Callable[..., T.Any], *args: T.Any, **kwargs: T.Any) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` in a worker, returning a concurrent future (usable from any thread)."""
        cf: concurrent.futures.Future = concurrent.futures.Future()
        self.call(fn, args, kwargs, _settle_concurrent, cf)
        return cf

    def abandon(self, call: ThreadCall) -> None:
        """Stop waiting for ``call``: its thread leaves the pool and ends after the call returns.

        A call no thread has taken yet is dropped.  Neither case blocks:
        ``shutdown`` does not wait for an abandoned call.
        """
        with self._lock:
            for thread, item in self._busy.items():
                if item is call:
                    self._abandoned.add(thread)
                    if thread in self._threads:
                        self._threads.remove(thread)
                    return
            self._dropped.add(id(call))

    # -------------------------------------------------------------- workers
    def _start_worker(self) -> None:
        thread = threading.Thread(target=self._work, daemon=True,
                                  name=f"executor-job_{len(self._threads)}")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        calls, completed, lock = self._calls, self._completed, self._lock
        me = threading.current_thread()
        while True:
            item = calls.get()
            if item is None:
                return
            with lock:
                if self._dropped and id(item) in self._dropped:
                    self._dropped.discard(id(item))
                    item = None
                else:
                    self._busy[me] = item
            if item is None:  # abandoned before it started
                self._idle.release()
                continue
            func, args, kwargs, on_done, _ = item
            try:
                value = func(*args, **kwargs)
                if inspect.iscoroutine(value):
                    value = asyncio.run(value)
                ok = True
            except BaseException as exc:  # handed to the loop side, which decides
                value, ok = exc, False
            if on_done is _settle_concurrent:  # thread-safe already: settle right here
                on_done(item, ok, value)
            else:
                completed.append((item, ok, value))
                if not self._wake_pending:
                    self._wake()
            del item, func, args, kwargs, value  # drop references before idling
            with lock:
                del self._busy[me]
                if me in self._abandoned:  # replaced already: not a pool thread any more
                    self._abandoned.discard(me)
                    return
            self._idle.release()

    def _wake(self) -> None:
        self._wake_pending = True
        loop = self._loop
        try:
            if loop is not None:
                loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to take the results
            self._completed.clear()

    def _drain(self) -> None:
        """On the loop: run the completion callbacks of every finished call, then ``after_batch``."""
        # reset first: a completion appended after this line schedules a new drain
        self._wake_pending = False
        completed = self._completed
        try:
            while completed:
                item, ok, value = completed.popleft()
                item[3](item, ok, value)
        finally:
            if completed and not self._wake_pending:  # a callback raised: the rest next time
                self._wake()
            if self._after_batch is not None:
                self._after_batch()

    # ------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Drop queued calls, end the idle threads and wait for calls still running.

        Abandoned calls (see :meth:`abandon`) are not waited for: their
        threads cannot be killed, they end by themselves once the call returns.
        """
        self._closed = True
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                target = item[4]
                if isinstance(target, (asyncio.Future, concurrent.futures.Future)):
                    try:
                        target.cancel()
                    except RuntimeError:  # its loop is closed: nobody awaits it any more
                        pass
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads.clear()
        self._completed.clear()
