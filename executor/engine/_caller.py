"""Running job bodies on the threads that wait for the engine (the lane behind :class:`CallerJob`).

Some work must run on one particular thread that the engine does not own: a
pytest plugin has to run pytest's test protocol on the main thread (signal
handlers, ``faulthandler``, fixtures that assume it), and that thread is the one
blocked waiting for the run.  Rather than hand that thread's control flow to the
engine (a second event loop, or the engine's loop moved onto it), the engine
keeps its loop thread and lets a *waiting* thread work while it waits:

* a :class:`~executor.engine.job.caller.CallerJob` is an ordinary job for the
  scheduler (conditions, dependencies, retries, limits, ``exclusive`` all
  apply); when it starts, its ``run_function`` posts its body to this lane and
  awaits the result;
* every thread blocked in ``engine.wait()``, ``engine.wait_job()``,
  ``job.wait()`` or ``engine.serve_caller()`` serves the lane: it takes posted
  bodies, runs them, hands back their results, and goes on waiting.

So the body runs on a thread that would otherwise sleep, with no extra thread
and no hop of the waiting thread's state.  A body posted while no thread waits
stays queued until one does.

Why a job type and not an option of :class:`LocalJob`: *where* a job runs is
what job types express (``resource_kind``, ``run_function``), and it gives
caller bodies their own slot limit (``EngineSetting.max_caller_jobs``) without
touching LocalJob's fast path or its upstream signature.

A thread cannot be interrupted, so neither cancelling a running body nor its
``timeout`` stops it: a cancelled job's body finishes and its result is
dropped; a body that outlives its timeout fails its attempt with
:class:`~executor.engine.job.utils.JobTimeoutError` when it returns.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
import typing as T

from .job.utils import call_sync

__all__ = ["CallerLane"]


class _Body(T.NamedTuple):
    func: T.Callable[..., T.Any]
    args: tuple
    kwargs: dict
    future: concurrent.futures.Future


class CallerLane:
    """Bodies posted by the engine loop, run by whichever thread waits for the engine."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[_Body] = collections.deque()
        self.wake: T.Optional[T.Callable[[], None]] = None
        """Called after each post: how an engine driven by its caller learns of a body (see ``_driving``)."""

    def post(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> concurrent.futures.Future:
        """Queue a body (any thread); the future settles with its result once a waiting thread ran it.

        Cancelling the future before a thread took the body withdraws it.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._queue.append(_Body(func, args, kwargs, future))
            self._cond.notify()
        wake = self.wake
        if wake is not None:
            wake()
        return future

    def run_posted(self) -> bool:
        """Run the bodies posted so far on this thread, without waiting; whether there were any."""
        ran = False
        while True:
            with self._cond:
                if not self._queue:
                    return ran
                body = self._queue.popleft()
            ran = True
            self._run(body)

    def serve_until(self, done: concurrent.futures.Future, timeout: T.Optional[float] = None) -> bool:
        """Run posted bodies on this thread until ``done`` settles or ``timeout`` seconds passed.

        Returns whether ``done`` settled.  A body that raises
        ``KeyboardInterrupt``/``SystemExit`` fails its job and the exception
        goes on in this thread (Ctrl-C reaches the waiting program).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        done.add_done_callback(self._wake)
        while True:
            with self._cond:
                while not self._queue:
                    if done.done():
                        return True
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                body = self._queue.popleft()
            self._run(body)

    def _wake(self, _done: object = None) -> None:
        with self._cond:
            self._cond.notify_all()

    @staticmethod
    def _run(body: _Body) -> None:
        if not body.future.set_running_or_notify_cancel():  # withdrawn (cancelled, timed out) before it ran
            return
        try:
            result = call_sync(body.func, body.args, body.kwargs)
        except BaseException as exc:
            body.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        body.future.set_result(result)
