"""Job lifecycle: statuses, attempts, retries, timeouts, finishing, and status listeners.

Every status change of a submitted job goes through :meth:`JobLifecycle._set_status`
(or its bulk form), on the engine's loop thread: it moves the job in the
``Jobs`` manager, wakes the scheduler entries that watch the job, tells the
status listeners (``engine.add_listener``) and resolves ``join()`` waiters.

An attempt with a ``timeout`` gets a loop timer when it starts.  When it fires
and the attempt still runs, the engine sets ``job._timed_out = True`` and
cancels the attempt's Task: the job type sees ``CancelledError`` in its
``run_function`` and may stop its work its own way (and raise an error of its
own, which then fails the attempt); otherwise the cancellation becomes a failed
attempt with :class:`~executor.engine.job.utils.JobTimeoutError`.  Work that
cannot be interrupted (a sync function on the loop) fails the same way when it
returns after the deadline.  Retries apply in every case.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import typing as T
from datetime import datetime

from ._loop_bridge import LoopBridge, StatusListener
from .job._upstream_api import overrides_status_hooks
from .job.base import Job, JobFuture, _ProxyBase
from .job.utils import FINISHED_STATUSES, JobEmitError, JobStatusType, JobTimeoutError
from .log import logger

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import Engine

__all__ = ["JobLifecycle", "safe_callback"]

FINISHED = frozenset(FINISHED_STATUSES)


class JobLifecycle(LoopBridge):
    """Attempts, their outcomes and the status changes they make (on the loop thread)."""

    # ------------------------------------------------------------ listeners
    def add_listener(self, listener: StatusListener) -> None:
        """Call ``listener(job, status)`` after every status change of a job of this engine.

        Called on the engine's loop thread, right after the job moved to
        ``status`` (``pending``, ``running``, ``done``, ``failed`` or
        ``cancelled``; a retry goes ``running`` → ``pending``), before the
        job's ``join()`` waiters wake.  Keep it short and non-blocking (hand
        the event to another thread through a queue if there is work to do);
        an exception it raises is logged and does not stop the engine.
        Without listeners, status changes cost nothing extra.
        """
        if not callable(listener):
            raise TypeError(f"add_listener() takes a callable listener(job, status), got {listener!r}")
        self._status_listeners.append(listener)

    def remove_listener(self, listener: StatusListener) -> None:
        """Stop calling ``listener`` (ValueError if it was not added)."""
        try:
            self._status_listeners.remove(listener)
        except ValueError:
            raise ValueError(f"{listener!r} is not a listener of this engine") from None

    def _tell_listeners(self, job: Job, status: JobStatusType) -> None:
        for listener in list(self._status_listeners):
            try:
                listener(job, status)
            except Exception as exc:  # a broken listener must not break the engine
                logger.error(f"status listener {listener!r} raised {exc!r} for job {job.name} ({job.id})")

    # ------------------------------------------------------------- timeouts
    def _arm_timeout(self, job: Job) -> None:
        """Start the clock of a starting attempt of a job with a ``timeout``."""
        assert self._loop is not None and job.timeout is not None
        if job._timed_out:
            job._timed_out = False
        job._timeout_timer = self._loop.call_later(job.timeout, self._attempt_timed_out, job)

    def _attempt_timed_out(self, job: Job) -> None:
        job._timeout_timer = None
        if job._status != "running":
            return
        job._timed_out = True
        task = job._task
        if task is not None and not task.done():
            task.cancel()

    def _returned_late(self, job: Job) -> bool:
        """Whether the running attempt returned after its deadline (its timer could not fire: the loop was busy)."""
        timer = job._timeout_timer
        assert self._loop is not None
        return timer is not None and self._loop.time() >= timer.when()

    # ------------------------------------------------------------- attempts
    async def _run_awaitable(self, job: Job, awaitable: T.Awaitable[T.Any]) -> T.Any:
        async def attempt(_engine: "Engine") -> T.Any:
            return await awaitable

        return await self._run(job, attempt)

    async def _run(self, job: Job,
                   attempt: T.Optional[T.Callable[["Engine"], T.Awaitable[T.Any]]] = None) -> None:
        try:
            result = await (attempt or job._execute)(T.cast("Engine", self))
            if overrides_status_hooks(type(job)) and job.status == "running" and not isinstance(result, _ProxyBase):
                # upstream's outcome hook ends the attempt (its base form calls _finish_attempt)
                await job.on_done(result)
                return
        except asyncio.CancelledError:
            if job.status == "running":
                if job._timed_out:  # stopped by its timeout (the job type raised no error of its own)
                    self._attempt_failed(job, JobTimeoutError.for_job(job))
                else:  # cancelled by the loop going away, not by us
                    self._sched.finished(job)
                    self._finish(job, "cancelled")
            return
        except Exception as exc:
            if job.status == "running":
                if overrides_status_hooks(type(job)):
                    await self._on_failed_hook(job, exc)
                else:
                    self._attempt_failed(job, exc)
            return
        except BaseException as exc:  # SystemExit/KeyboardInterrupt inside a local job
            if job.status == "running":
                self._attempt_failed(job, exc)
            raise
        finally:
            if job._task is asyncio.current_task():  # (a retry may have started a new one meanwhile)
                job._task = None
        if job.status != "running":  # cancelled while finishing
            return
        if isinstance(result, _ProxyBase):
            return  # a generator job runs until its proxy is exhausted
        if job._timeout_timer is not None and self._returned_late(job):
            self._attempt_failed(job, JobTimeoutError.for_job(job))
            return
        job._result = result
        self._sched.finished(job)
        self._finish(job, "done")
        self._pump()

    async def _on_failed_hook(self, job: Job, exc: Exception) -> None:
        """Hand a failed attempt to the job's own ``on_failed``; if that raises, the attempt fails with it."""
        try:
            await job.on_failed(exc)
        except Exception as hook_error:
            if job.status == "running":
                self._attempt_failed(job, hook_error)

    def _attempt_failed(self, job: Job, exc: BaseException, pump: bool = True) -> None:
        self._sched.finished(job)
        if job.attempts <= job.retries:
            logger.trace(f"job {job.name} ({job.id}) failed with {exc!r}; "
                        f"retry {job.attempts}/{job.retries} in {job.retry_time_delta} s")
            self._set_status(job, "pending")
            self._sched.add(job, job.id, job.resource_kind, None, time.time(),
                            not_before=time.time() + job.retry_time_delta, exclusive=job.exclusive)
        else:
            job._record_failure(exc)
            self._report_failure(job, exc, "")
            self._finish(job, "failed")
        if pump:
            self._pump()

    def _finish_attempt(self, job: Job, status: JobStatusType, value: T.Any) -> None:
        """End the running attempt from a job's ``on_done``/``on_failed`` (upstream's hooks)."""
        if job.status != "running":
            return
        if status == "done":
            job._result = value
            self._sched.finished(job)
            self._finish(job, "done")
            self._pump()
        else:
            self._attempt_failed(job, value)

    def _report_failure(self, job: Job, exc: BaseException, why: str) -> None:
        where = f" ({why})" if why else ""
        if self.print_traceback:
            logger.error(f"job {job.name} ({job.id}) failed{where}:\n{job.traceback}")
        else:
            logger.trace(f"job {job.name} ({job.id}) failed{where}: {exc!r}")

    def _generator_ended(self, job: Job, exc: T.Optional[BaseException]) -> None:
        """Called by a generator proxy (any thread) when its generator ended."""
        if not self._in_loop_thread():
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._generator_ended, job, exc)
            return
        if job.status != "running":
            return
        self._sched.finished(job)
        if exc is None:
            self._finish(job, "done")
        else:
            job._record_failure(exc)
            self._report_failure(job, exc, "its generator raised")
            self._finish(job, "failed")
        self._pump()

    def _finish(self, job: Job, status: JobStatusType) -> None:
        """Final status of one attempt: record it and run the callbacks."""
        job.stop_time = datetime.now()
        self._set_status(job, status)
        if status == "done" and job.callback is not None:
            safe_callback(job, job.callback, job._result)
        elif status == "failed" and job.error_callback is not None and job._exception is not None:
            safe_callback(job, job.error_callback, job._exception)

    def _set_status_many(self, jobs: T.Sequence[Job], status: JobStatusType) -> None:
        """:meth:`_set_status` for each job, in bulk when no listener or waiting job needs telling."""
        if self._status_listeners or self._sched.watching_any or status in FINISHED:
            for job in jobs:
                self._set_status(job, status)
        else:
            self.jobs.set_status_many(jobs, status)

    def _set_status(self, job: Job, status: JobStatusType) -> None:
        old = job._status
        job._status = status
        self.jobs.moved(job, old)
        if old == "running" and job._timeout_timer is not None:  # the attempt ended
            job._timeout_timer.cancel()
            job._timeout_timer = None
        sched = self._sched
        if sched.is_watched(job.id):
            sched.job_changed(job.id, time.time())
        if self._status_listeners:
            self._tell_listeners(job, status)
        if status in FINISHED:
            waiters = job._waiters
            if waiters is not None:
                job._waiters = None
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            self._wake_idle_waiters()

    def _future_value(self, future: JobFuture) -> T.Any:
        upstream = self.jobs.get(future.job_id)
        if upstream is None:
            raise JobEmitError(f"upstream job {future.job_id} is unknown to this engine")
        return upstream.result()

    def _wake_idle_waiters(self) -> None:
        """Resolve ``join()``s waiting for all jobs, once no job is active (and no submit is half-way)."""
        if self._idle_waiters and not self._submitting and self.jobs.active_count == 0:
            idle, self._idle_waiters = self._idle_waiters, []
            for fut in idle:
                if not fut.done():
                    fut.set_result(None)


def safe_callback(job: Job, fn: T.Callable[[T.Any], T.Any], value: T.Any) -> None:
    try:
        outcome = fn(value)
        if outcome is not None and inspect.isawaitable(outcome):  # a coroutine callback: awaited, as upstream
            asyncio.ensure_future(outcome)
    except Exception as exc:  # a broken callback must not break the engine
        logger.error(f"callback {fn!r} of job {job.name} ({job.id}) raised {exc!r}")
