"""The engine's fast path: attempts that run without a Task of their own.

Most jobs are plain calls: a LocalJob's sync function, a ThreadJob's function
on the thread pool.  A Task per attempt would cost more than many such calls,
so :meth:`FastPath._start_many` sends them elsewhere:

* inline calls (:data:`~executor.engine.job._routes.INLINE`) are queued and run
  in batches by one loop callback, each in its own copy of the context;
* thread calls (``ON_THREAD``) go straight to the thread backend, whose batched
  completion callback finishes the returned jobs in bulk.

Everything else (and any attempt with a ``timeout``, which needs a Task to
cancel) gets a Task running ``job._execute``.  Which route a job class takes is
decided once per class: the base rule here, job types with their own route
registered in :mod:`executor.engine.job._routes`.
"""

from __future__ import annotations

import contextvars
import inspect
import typing as T
from datetime import datetime

from ._lifecycle import JobLifecycle, safe_callback
from .job._routes import INLINE as _INLINE
from .job._routes import ON_CALLER as _ON_CALLER
from .job._routes import ON_THREAD as _ON_THREAD
from .job._routes import OWN_THREAD_CALL as _OWN_THREAD_CALL
from .job._routes import ThreadCallJob, registered_route
from .job._upstream_api import uses_upstream_hooks
from .job.base import Job, func_traits

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import Engine

__all__ = ["FastPath"]

_PLAIN_RESULTS = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set})
"""Result types that are never awaitable (skips the slower ``inspect.isawaitable``)."""
_fast_classes: dict[type, int] = {}
"""Per job class: the fast path its plain calls may take (0: none, the class runs them its own way)."""


def _class_fast_path(cls: type[Job]) -> int:
    if cls._execute is not Job._execute or uses_upstream_hooks(cls):
        return 0
    route = registered_route(cls)
    if route is not None:
        return route
    if cls.call_options is not Job.call_options:
        return 0
    return _INLINE if cls.run_function is Job.run_function else 0


def _fast_path(job: Job, driven: bool) -> int:
    """How the attempt may run without a Task: ``_INLINE``, ``_ON_THREAD`` or 0 (a Task).

    ``_INLINE``: a plain sync call on the loop thread (a job class keeping the
    base ``run_function``/``_execute``/``call_options``, i.e. LocalJob).
    ``_ON_THREAD``: a ThreadJob class keeping ThreadJob's ``run_function``; the
    call goes straight to the thread backend, whose batched completion
    callback finishes the job.  Either needs no working-dir or redirection
    option and a function that is not a generator function; inline calls
    also no coroutine function (a sync function returning an awaitable is
    still handled: the awaitable gets a Task).  A ThreadJob class with its
    own ``thread_call`` hook (SubprocessJob) always goes to the thread: the
    hook turns the whole attempt, options included, into the call.
    ``_ON_CALLER``: a CallerJob on an engine driven by its caller
    (``start(loop_thread=False)``): queued for the driving thread, which runs it
    between loop iterations (see :mod:`executor.engine._driving`).
    """
    cls = type(job)
    path = _fast_classes.get(cls)
    if path is None:
        path = _fast_classes[cls] = _class_fast_path(cls)
    if job.timeout is not None:  # a Task: its timeout cancels it
        return 0
    if path == _OWN_THREAD_CALL:
        return _ON_THREAD
    if not path or job.change_dir or job.redirect_out_err or (path == _ON_CALLER and not driven):
        return 0
    traits = func_traits(job.func)
    if traits.generator or (path != _ON_THREAD and traits.coroutine):
        return 0
    return path


class FastPath(JobLifecycle):
    """Starting attempts: plain calls inline or on the thread backend, the rest as Tasks."""

    def _start_many(self, jobs: list[Job]) -> None:
        """Start jobs the scheduler gave a slot: plain calls go to the inline queue or
        straight to the thread backend, others get a Task."""
        loop = self._loop
        assert loop is not None
        started = datetime.now()  # one scheduling round: one start time
        driven = self._driver is not None
        paths = [_fast_path(job, driven) for job in jobs]
        for job, path in zip(jobs, paths):
            job.attempts += 1
            job.start_time = started
            if path:
                if job._proxy is not None:
                    job._proxy = None
            else:
                job._prepare_proxy()  # before the status: a running generator job has its proxy
        self._set_status_many(jobs, "running")
        queue = self._inline
        on_thread: list[Job] = []
        for job, path in zip(jobs, paths):
            if job._status != "running":  # a status listener cancelled it
                continue
            if not path:
                job._task = loop.create_task(self._run(job))
                if job.timeout is not None:
                    self._arm_timeout(job)
            elif path == _ON_THREAD:
                on_thread.append(job)
            elif path == _ON_CALLER:
                self._caller_queue.append(job)
            elif job._queued is not self:  # else a rerun found its entry still queued: that one runs it
                job._queued = self  # type: ignore[assignment]  # self is the Engine (its base class here)
                queue.append(job)
        if self._caller_queue and loop.is_running():
            loop.stop()  # the driving thread runs them once the loop returns control (see _driving)
        if queue and not self._inline_scheduled:
            self._inline_scheduled = True
            loop.call_soon(self._run_inline_batch)
        if on_thread:
            self._start_on_threads(on_thread)

    def _start_on_threads(self, jobs: list[Job]) -> None:
        """Hand plain ThreadJob calls to the thread backend; :meth:`_thread_call_done` takes the results."""
        backend = self.thread_backend
        done = self._thread_call_done
        engine = T.cast("Engine", self)  # every layer is a base of the Engine
        for job in jobs:
            try:
                func, args, kwargs = T.cast(ThreadCallJob, job).thread_call(*job._resolved_call(engine))
            except Exception as exc:  # an upstream result that cannot be had, a hook that raised
                self._attempt_failed(job, exc, pump=False)
                continue
            job._thread_call = backend.call(func, args, kwargs, done, job)

    def _thread_call_done(self, call: tuple, ok: bool, value: T.Any) -> None:
        """On the loop: a fast-path ThreadJob's call returned (``value``) or raised (``value`` is the exception).

        A result of an attempt that is no longer current (the job was
        cancelled, maybe rerun since) is dropped.
        """
        job: Job = call[4]
        if job._thread_call is not call:
            return
        job._thread_call = None
        if job._status != "running":  # cancelled meanwhile: the result is dropped
            return
        if ok:
            job._result = value
            self._thread_results.append(job)
        elif isinstance(value, Exception):
            self._attempt_failed(job, value, pump=False)
        else:  # SystemExit/KeyboardInterrupt inside the call: stops the loop, as from a Task
            self._attempt_failed(job, value, pump=False)
            raise value

    def _after_thread_batch(self) -> None:
        """After a batch of thread completions: finish the done jobs together, then schedule once."""
        jobs, self._thread_results = self._thread_results, []
        if jobs:
            self._finish_done_many(jobs)
        self._pump()

    def _finish_done_many(self, jobs: list[Job]) -> None:
        """:meth:`_finish` with ``"done"`` for jobs whose result is set, in bulk where nobody watches."""
        sched = self._sched
        for job in jobs:
            sched.finished(job)
        if self._status_listeners or sched.watching_any:
            for job in jobs:
                self._finish(job, "done")
            return
        stopped = datetime.now()
        for job in jobs:
            job.stop_time = stopped
        self.jobs.set_status_many(jobs, "done")
        for job in jobs:
            waiters = job._waiters
            if waiters:
                job._waiters = None
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            if job.callback is not None:
                safe_callback(job, job.callback, job._result)
        self._wake_idle_waiters()

    def _run_inline_batch(self) -> None:
        """Run the queued plain calls (those queued before this round; later ones get the next round).

        Like one Task per job, but without the Task: each call runs in its own
        copy of the context, and the loop gets control back between rounds.
        Freed slots are handed out once, after the round.
        """
        queue = self._inline
        try:
            self._run_queued_inline()
        finally:
            if queue and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon(self._run_inline_batch)
            else:
                self._inline_scheduled = False
            self._pump()

    def _run_queued_inline(self) -> None:
        """Run the plain calls queued so far (see :meth:`_run_inline_batch`)."""
        queue = self._inline
        for _ in range(len(queue)):
            job = queue.popleft()
            if job._queued is not self:  # moved on to another engine meanwhile
                continue
            job._queued = None
            if job._status == "running" and job._task is None:
                self._run_inline(job)

    def _run_inline(self, job: Job) -> None:
        """One attempt of a plain call, on the loop thread (see :func:`_fast_path`)."""
        try:
            func, args, kwargs = job._resolved_call(self)  # type: ignore[arg-type]  # self is the Engine
            result = contextvars.copy_context().run(func, *args, **kwargs)
        except Exception as exc:
            if job._status == "running":
                self._attempt_failed(job, exc, pump=False)
            return
        except BaseException as exc:  # SystemExit/KeyboardInterrupt: stops the loop, as from a Task
            if job._status == "running":
                self._attempt_failed(job, exc, pump=False)
            raise
        if job._status != "running":  # it cancelled itself
            return
        if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):  # a sync function handing back an awaitable: await it in a Task
            assert self._loop is not None
            job._task = self._loop.create_task(self._run_awaitable(job, result))
            return
        job._result = result
        self._sched.finished(job)
        self._finish(job, "done")
