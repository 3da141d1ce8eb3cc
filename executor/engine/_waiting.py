"""Cancelling jobs and waiting for them (``cancel``, ``join``, ``wait``, ``wait_job``, ``serve_caller``).

The blocking waits (``wait``, ``wait_job``, ``serve_caller``; ``job.wait()``
goes through ``wait_job``) run CallerJob bodies on the waiting thread while they
block (see :mod:`executor.engine._caller`); the async ones do not.
"""

from __future__ import annotations

import asyncio
import threading
import typing as T

from ._loop_bridge import check_jobs
from ._submitting import Submitting
from .job._routes import ThreadCallJob
from .job._upstream_api import overrides_cancel
from .job.base import Job
from .job.utils import ACTIVE_STATUSES
from .log import logger

__all__ = ["Waiting"]


class Waiting(Submitting):
    """Cancel and wait: the calls that end or await jobs."""

    if T.TYPE_CHECKING:  # pragma: no cover  (UpstreamEngineAPI, mixed into the Engine)
        async def _wait_selected(self, timeout: T.Optional[float],
                                 select_jobs: T.Optional[T.Callable[..., T.Any]]) -> bool: ...

        def _drain(self) -> None: ...  # (Driving)

    def cancel(self, *jobs: Job) -> None:
        """Cancel jobs; returns once they are cancelled and their workers are stopped."""
        check_jobs(jobs)
        if self._driver is not None and self._in_loop_thread():
            self._cancel_now(list(jobs))
            return
        if self._loop is None or not self._loop.is_running():
            for job in jobs:
                if job.status in ACTIVE_STATUSES:
                    raise RuntimeError("the engine is not running; nothing can be cancelled")
            return
        if self._in_loop_thread():
            self._cancel_now(list(jobs))
            return
        self._call_on_loop_async(self._cancel_and_wait, list(jobs))

    async def cancel_async(self, *jobs: Job) -> None:
        """Cancel jobs from a coroutine and wait until their work has stopped."""
        await self._on_loop_async_coro(self._cancel_and_wait, list(jobs))

    def cancel_all(self) -> None:
        """Cancel every pending or running job."""
        self.cancel(*self._active_jobs())

    async def cancel_all_async(self) -> None:
        """Async form of :meth:`cancel_all`."""
        await self.cancel_async(*self._active_jobs())

    def _active_jobs(self) -> list[Job]:
        return list(self.jobs.pending.values()) + list(self.jobs.running.values())

    async def _cancel_and_wait(self, jobs: list[Job]) -> None:
        # a job type written the upstream way may override cancel(): it runs, and ends in _cancel_own_and_wait
        for job in [j for j in jobs if overrides_cancel(type(j))]:
            try:
                await job.cancel()
            except Exception as exc:  # a broken hook must not break cancelling the others
                logger.error(f"cancel() of job {job.name} ({job.id}) raised {exc!r}")
        await self._cancel_own_and_wait([j for j in jobs if not overrides_cancel(type(j))])

    async def _cancel_own_and_wait(self, jobs: list[Job]) -> None:
        """Cancel jobs the engine's way and wait until their work has stopped (``Job.cancel`` ends here)."""
        tasks = self._cancel_now(jobs)
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def _cancel_now(self, jobs: T.Sequence[Job]) -> list[asyncio.Task]:
        """Cancel on the loop thread; returns the tasks still unwinding."""
        tasks: list[asyncio.Task] = []
        for job in jobs:
            if job.engine is not self:
                continue
            if job.status == "pending":
                self._sched.discard(job)
                self._finish(job, "cancelled")
            elif job.status == "running":
                job._cancel_requested = True
                self._sched.finished(job)
                task = job._task
                if task is not None and not task.done():
                    task.cancel()
                    tasks.append(task)
                elif job._thread_call is not None:  # a fast-path call: the job may know how to stop it
                    self._stop_thread_call(job, tasks)
                proxy = job._proxy
                if proxy is not None and proxy._driver.done() and proxy._driver.exception() is None:
                    proxy._driver.result().abandon()
                if type(job).clear_context is not Job.clear_context:
                    clear_context(job)
                self._finish(job, "cancelled")
        if not self._pumping:
            self._pump()
        return tasks

    def _stop_thread_call(self, job: Job, tasks: list[asyncio.Task]) -> None:
        """Run the job's ``cancel_thread_call`` hook; its stopping coroutine joins ``tasks``.

        Without one, the call is abandoned: a thread cannot be killed, so
        neither ``cancel`` nor ``stop`` waits for it (see ``ThreadBackend.abandon``).
        """
        call = job._thread_call
        try:
            stopping = T.cast(ThreadCallJob, job).cancel_thread_call()
        except Exception as exc:  # a broken hook must not break cancelling the others
            logger.error(f"cancel_thread_call of job {job.name} ({job.id}) raised {exc!r}")
            stopping = None
        if stopping is None:
            backend = self._backends.get("thread")
            if call is not None and backend is not None:
                backend.abandon(call)
            return
        assert self._loop is not None
        tasks.append(self._loop.create_task(stopping))

    def remove(self, job: Job) -> None:
        """Cancel the job if active, then forget it."""
        if job.status in ACTIVE_STATUSES:
            self.cancel(job)
        self.jobs.remove(job)

    # ---------------------------------------------------------------- wait
    async def join(self, jobs: T.Optional[T.Sequence[Job]] = None,
                   timeout: T.Optional[float] = None) -> None:
        """Wait until the given jobs (default: all) are finished, or ``timeout`` seconds passed.

        As upstream, a timeout is no error: ``join`` returns and the jobs keep
        their status (check ``job.status`` or ``engine.jobs.pending``).
        """
        if jobs is not None:
            check_jobs(jobs)
        try:
            await self._on_loop_async_coro(self._join_here, jobs, timeout)
        except TimeoutError:
            pass

    async def _join_here(self, jobs: T.Optional[T.Sequence[Job]], timeout: T.Optional[float]) -> None:
        assert self._loop is not None
        waits: list[asyncio.Future] = []
        if jobs is None:
            if self.jobs.active_count:
                fut = self._loop.create_future()
                self._idle_waiters.append(fut)
                waits.append(fut)
        else:
            for job in jobs:
                if job.status in ACTIVE_STATUSES:
                    fut = self._loop.create_future()
                    if job._waiters is None:
                        job._waiters = []
                    job._waiters.append(fut)
                    waits.append(fut)
        if not waits:
            return
        done, _ = await asyncio.wait(waits, timeout=timeout)
        if len(done) != len(waits):
            raise TimeoutError(f"jobs still unfinished after {timeout} s")

    def wait(self, timeout: T.Optional[float] = None, time_delta: float = 0.2,
             select_jobs: T.Optional[T.Callable[..., T.Any]] = None) -> bool:
        """Block until no job (or none of those ``select_jobs`` picks) is pending or running; False on timeout.

        ``select_jobs``: upstream's ``select_jobs(engine.jobs) -> list of jobs``,
        or a predicate taking one job.

        ``time_delta`` is accepted for compatibility and unused: waiting is event-driven.
        """
        return bool(self._wait_serving(self._wait_selected, timeout, select_jobs))

    def wait_job(self, job: Job, timeout: T.Optional[float] = None) -> T.Optional[T.Any]:
        """Block until ``job`` finished, or ``timeout`` seconds passed; return its result if it is done.

        As upstream, a timeout is no error: the job keeps running and the
        return value is None (as for a failed or cancelled job).
        """
        check_jobs([job])
        try:
            self._wait_serving(self._join_here, [job], timeout)
        except TimeoutError:
            return None
        return job.result() if job.status == "done" else None

    def serve_caller(self, jobs: T.Optional[T.Sequence[Job]] = None, timeout: T.Optional[float] = None) -> bool:
        """Run CallerJob bodies on this thread until ``jobs`` (default: all jobs) finished; False on timeout.

        The same as ``wait``/``wait_job``, which also run CallerJob bodies
        while they block, but for a set of jobs.  Call it from the thread that
        must run the bodies (the main thread, for a pytest run); not from the
        engine's loop thread.  A timeout is no error: the jobs keep running.

        On an engine started with ``loop_thread=False``, ``timeout=0`` runs
        everything that is ready now (CallerJobs included) and returns.
        """
        if jobs is not None:
            check_jobs(jobs)
        if self._driver is not None and timeout is not None and timeout <= 0:
            if threading.get_ident() != self._driver:
                raise RuntimeError("this engine's loop is driven by the thread that started it "
                                   "(start(loop_thread=False)); wait for it from that thread")
            self._drain()
            if jobs is None:  # called once per wait of a controller loop: no list of every job
                return not (len(self.jobs.pending) or len(self.jobs.running))
            return not any(j.status in ACTIVE_STATUSES for j in jobs)
        try:
            self._wait_serving(self._join_here, jobs, timeout)
        except TimeoutError:
            return False
        return True


def clear_context(job: Job) -> None:
    """Run a job's ``clear_context`` hook (its running attempt was cancelled)."""
    try:
        job.clear_context()
    except Exception as exc:  # a broken hook must not break cancelling the others
        logger.error(f"clear_context of job {job.name} ({job.id}) raised {exc!r}")
