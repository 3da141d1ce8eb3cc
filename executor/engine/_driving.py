"""An engine driven by its caller: ``start(loop_thread=False)`` runs the loop on the thread that waits.

Why: a pytest run executes every in-process test as a :class:`~executor.engine.job.caller.CallerJob`
whose body must run on the main thread.  With the engine's loop on a thread of
its own, each such job costs two cross-thread wake-ups (the loop posts the
body; the body's result wakes the loop, which then starts the next job) and a
Task: about half a millisecond per job on a loaded machine, more than a trivial
test takes.  An engine driven by its caller has no thread: its loop runs on the
thread that started it, while that thread waits in ``serve_caller``, ``wait``
or ``wait_job``.  Started CallerJobs are not posted anywhere: they queue for the
driving thread, which runs them *between* loop iterations (so no event loop is
running during a body, and ``asyncio.run`` inside one works), finishing each
and starting the next ready one with plain calls.  A chain of ready CallerJobs
thus runs back to back without going through the loop; the loop still gets an
iteration every few milliseconds (timers, completions of other jobs, posts from
other threads), and whenever no CallerJob is queued it runs until one is (or
until what the thread waits for is done).

The cost of the choice: the engine makes progress only while its driving thread
waits in it.  ``submit``, ``cancel`` and the waits are called from that thread
(``submit`` from another thread blocks until the driver next waits); ``stop``
too.  ``serve_caller(timeout=0)`` runs everything that is ready and returns at
once: a driver that also waits for something else (a pytest controller reading
its workers' pipes) alternates between the two.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import typing as T

from ._loop_bridge import live_engines
from ._waiting import Waiting
from .job.base import Job

__all__ = ["Driving"]

_SLICE = 0.005
"""Seconds of back-to-back CallerJobs after which the loop gets an iteration (timers, I/O, other jobs)."""


class Driving(Waiting):
    """The caller-driven mode of the engine (see the module docstring)."""

    if T.TYPE_CHECKING:  # pragma: no cover  (the Engine)
        async def _shutdown(self) -> None: ...

    def _start_driven(self) -> None:
        """Adopt a new loop driven by this thread (the ``start(loop_thread=False)`` form)."""
        self._loop = asyncio.new_event_loop()
        self._driver = threading.get_ident()
        self._loop_thread_id = self._driver
        self._stopping = False
        self._callers.wake = self._wake_driver
        live_engines.add(self)

    def _stop_driven(self) -> None:
        """Cancel what is left, close the backends and the loop (on the driving thread)."""
        if threading.get_ident() != self._driver:
            raise RuntimeError("an engine started with loop_thread=False is stopped by the thread that started it")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if loop.is_running():
                raise RuntimeError("engine.stop() cannot be called from a job running on the engine loop")
            try:
                loop.run_until_complete(self._shutdown())
            finally:
                loop.close()
        self._caller_queue.clear()
        self._callers.wake = None
        self._loop = None
        self._driver = None
        self._loop_thread_id = None
        self._sched = self._new_scheduler()

    def _wake_driver(self) -> None:
        """A body was posted to the caller lane: make the driving thread come back from the loop to run it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._driver:
            if loop.is_running():
                loop.stop()
        else:
            loop.call_soon_threadsafe(loop.stop)

    def _drive(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any:
        """Run the loop and the queued CallerJobs on this thread until ``coro_fn(*args)`` is done."""
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coro_fn(*args))
        task.add_done_callback(lambda _task: loop.stop())
        try:
            while not task.done():
                if not self._run_caller_work():
                    loop.run_forever()  # until the task is done or a CallerJob/body is queued (both stop it)
        except BaseException:  # Ctrl-C in a body: stop waiting, as a plain blocking wait would
            task.cancel()
            raise
        return task.result()

    def _drain(self) -> None:
        """Run what is ready now (loop callbacks, due timers, queued CallerJobs) without blocking.

        A loop iteration is run only when the loop has something to do: a
        driver that calls this between other waits (a pytest controller reading
        its workers' pipes, many times a second) pays nothing when it has not.
        """
        loop = self._loop
        assert loop is not None
        polled = False
        while True:
            self._run_caller_work()
            if _has_ready(loop):
                self._one_iteration()
            elif not polled and _has_io(loop):
                polled = True  # sockets or pipes besides the loop's own wake-up pipe: look once
                self._one_iteration()
            else:
                return

    def _one_iteration(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.stop()  # a stopped loop runs exactly one iteration, without blocking
        loop.run_forever()

    def _run_caller_work(self) -> bool:
        """Run queued CallerJobs and posted bodies, back to back; whether there were any."""
        queue = self._caller_queue
        lane = self._callers
        ran = False
        last_loop = time.monotonic()
        while True:
            if queue:
                job = queue.popleft()
                if job._status == "running" and job._task is None:
                    self._run_caller_job(job)
            elif not lane.run_posted():
                return ran
            ran = True
            now = time.monotonic()
            if now - last_loop > _SLICE:  # let the loop breathe between long chains
                last_loop = now
                self._one_iteration()

    def _run_caller_job(self, job: Job) -> None:
        """One attempt of a CallerJob's plain call, on the driving thread (no loop running)."""
        try:
            func, args, kwargs = job._resolved_call(self)  # type: ignore[arg-type]  # self is the Engine
            result = contextvars.copy_context().run(func, *args, **kwargs)
        except Exception as exc:
            if job._status == "running":
                self._attempt_failed(job, exc)
            return
        except BaseException as exc:  # Ctrl-C/SystemExit belongs to this thread; for the job it is a failure
            if job._status == "running":
                failure = RuntimeError(f"the body was interrupted by {exc!r} on its thread")
                self._attempt_failed(job, failure)
            raise
        if job._status != "running":  # cancelled while it ran: its result is dropped
            return
        job._result = result
        self._sched.finished(job)
        self._finish(job, "done")
        self._pump()


# asyncio's BaseEventLoop keeps its ready callbacks in ``_ready``, its timers in the heap
# ``_scheduled`` and its I/O in ``_selector`` (all there since Python 3.4); a loop without
# them is treated as always having work.

def _has_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop has callbacks ready or a timer due."""
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if ready is None or scheduled is None:
        return True
    return bool(ready) or (bool(scheduled) and scheduled[0].when() <= loop.time())


def _has_io(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the loop watches file descriptors other than its own wake-up pipe."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return True
    return len(selector.get_map()) > 1
