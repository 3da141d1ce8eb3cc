"""Submitting jobs and applying the scheduler's decisions.

``submit`` checks and plans every job of the call (effective condition, upstream
futures), registers it, and hands it to the pure
:class:`~executor.engine._scheduler.Scheduler`; :meth:`Submitting._pump` then
applies the scheduler's decisions (start, cancel, fail) until it has none left
and re-arms the one timer the engine keeps for time conditions and retry delays.
"""

from __future__ import annotations

import time
import typing as T
from datetime import datetime

from ._fast_path import FastPath
from ._lifecycle import FINISHED
from ._loop_bridge import check_jobs
from ._scheduler import Scheduler
from .job.base import _NO_IDS, Job, JobFuture, func_traits
from .job.condition import AfterOthers, AllSatisfied, Condition
from .job.utils import JobEmitError
from .log import logger

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import Engine

__all__ = ["Submitting", "CHUNK"]

CHUNK = 256
"""Jobs of one submit() registered and started together (see ``Submitting._submit_now``)."""


class Submitting(FastPath):
    """``submit``, planning, registration and the scheduling pump."""

    def submit(self, *jobs: Job) -> None:
        """Register jobs; returns once they are pending or, where runnable, running.

        A job with a start-up phase (a WebappJob binding its port) is waited
        for until its work is up (see ``Job.wait_started``).

        Raises:
            RuntimeError: the engine was never started (use ``with Engine()``,
                ``start()``, or ``await submit_async`` inside a running loop).
            JobEmitError: a job is already pending/running.

        A condition naming a job id that is not submitted (yet) is no error:
        the job stays pending, visible in ``engine.jobs.pending``, until that
        job is submitted and reaches the awaited status (then it is woken at
        once, no polling), or until it is cancelled.
        """
        loop = self._loop
        if (self._driver is None and (loop is None or not loop.is_running())) or self._stopping:
            check_jobs(jobs)
            raise RuntimeError(
                "the engine is not started: use `with Engine() as engine:`, call engine.start(), "
                "or `await engine.submit_async(...)` inside a running event loop")
        # the jobs are checked on the loop, in the same pass that plans them (a large submit
        # reads each job from memory as few times as it can)
        starting: list[Job] = self._call_on_loop(self._submit_now, jobs)
        for job in starting:
            if job.status == "running":
                job.wait_started()

    async def submit_async(self, *jobs: Job) -> None:
        """Register jobs from a coroutine; binds the engine to the running loop if it has none."""
        starting: list[Job] = await self._on_loop_async(self._submit_now, jobs)
        for job in starting:
            if job.status == "running":
                await job.wait_started_async()

    def _submit_now(self, jobs: T.Sequence[Job]) -> list[Job]:
        """Register and schedule ``jobs``; return those whose class has a start-up phase to wait for."""
        if self._stopping:
            raise RuntimeError("the engine is stopping; it accepts no new jobs")
        conditions = self._plan_all(jobs)  # all valid before any is registered
        now = time.time()
        submitted = datetime.now()  # one submit() call: one submission time
        # Jobs without conditions go in chunks (registered, pending, started), so that a
        # large submit touches each job while it is still in the CPU cache.  Conditions
        # may name jobs of the same call: those see the whole call pending at once.
        size = CHUNK if all(c is None for c in conditions) else len(jobs)
        starting: list[Job] = []
        self._submitting = True  # join() must not see the engine idle between two chunks
        try:
            for first in range(0, len(jobs), size):
                chunk = jobs[first:first + size]
                for job in chunk:
                    self._register(job)
                    job.submit_time = submitted
                self._set_status_many(chunk, "pending")
                add = self._sched.add
                for job, condition in zip(chunk, conditions[first:first + size]):
                    if job._status == "pending":
                        add(job, job.id, job.resource_kind, condition, now,
                            poll_interval=job.wait_time_delta, cancel_on=job._upstream, exclusive=job.exclusive)
                self._pump()
                starting += [job for job in chunk if _has_start_up(type(job))]
                if first + size < len(jobs):
                    # the plain calls of a chunk run before the next chunk: their jobs are still in
                    # the CPU cache (a large submit would otherwise touch every job twice from RAM)
                    self._run_queued_inline()
        finally:
            self._submitting = False
        self._wake_idle_waiters()
        return starting

    def _plan_all(self, jobs: T.Sequence[Job]) -> list[T.Optional[Condition]]:
        """Check and plan every job of one submit (see :meth:`_plan`); their effective conditions."""
        ids: set[str] = set()
        conditions = []
        for job in jobs:
            if not isinstance(job, Job):
                raise TypeError(f"expected Job objects, got {type(job).__name__}: {job!r}")
            if job.id in ids:
                raise JobEmitError("the same job was given twice to one submit()")
            ids.add(job.id)
            conditions.append(self._plan(job))
        return conditions

    def _plan(self, job: Job) -> T.Optional[Condition]:
        """Validate one job for submission; return its effective condition (upstream ids go to ``job._upstream``)."""
        status = job._status
        if status == "pending" or status == "running":
            raise JobEmitError(f"job {job.name} ({job.id}) is already {status}; "
                               "only created or finished jobs can be submitted")
        if job.engine is not None and job.engine is not self and status != "created":
            if job.engine.jobs.get(job.id) is not None and job.engine.is_running:
                raise JobEmitError(f"job {job.id} belongs to another running engine")
        upstream = _upstream_ids(job)
        condition = job.condition
        if upstream:
            after = AfterOthers(job_ids=sorted(upstream), statuses=("done",))
            condition = after if condition is None else AllSatisfied(conditions=[condition, after])
        if job.id in upstream:
            raise JobEmitError(f"job {job.id} cannot take its own future as an argument")
        if job.timeout is not None and func_traits(job.func).generator:
            raise ValueError(f"job {job.name} ({job.id}): timeout cannot bound a generator function's job "
                             "(its attempt lasts as long as its consumer iterates it); drop timeout=")
        job.prepare(T.cast("Engine", self))  # every layer is a base of the Engine
        job._upstream = upstream
        return condition

    def _register(self, job: Job) -> None:
        if job._status in FINISHED:  # a rerun
            job._result = None
            job._exception = None
            job._traceback = None
            job._proxy = None
            job.start_time = job.stop_time = None
        job.attempts = 0
        if job._cancel_requested:
            job._cancel_requested = False
        job.engine = self  # type: ignore[assignment]  # self is the Engine (its base class here)
        if self.jobs.get(job.id) is not job:
            self.jobs.add(job)

    # ------------------------------------------------------------ scheduling
    def _new_scheduler(self) -> Scheduler[Job]:
        return Scheduler(self, self.setting.max_jobs, self.setting.limit_for, self._status_of)

    def _status_of(self, job_id: str) -> T.Optional[str]:
        job = self.jobs.get(job_id)
        return None if job is None else job.status

    def _pump(self) -> None:
        """Apply the scheduler's decisions until it has none left, then re-arm the timer."""
        if self._pumping:
            return
        self._pumping = True
        try:
            sched = self._sched
            while True:
                sched.advance(time.time())
                cancelled = sched.take_cancelled()
                failed = sched.take_failed()
                startable = [] if self._stopping else sched.take_startable()
                if not (cancelled or failed or startable):
                    break
                for job, reason in cancelled:
                    logger.trace(f"job {job.name} ({job.id}) cancelled: {reason}")
                    self._finish(job, "cancelled")
                for job, exc in failed:
                    job._record_failure(exc)
                    self._report_failure(job, exc, "its condition raised")
                    self._finish(job, "failed")
                if startable:
                    self._start_many(startable)
        finally:
            self._pumping = False
        self._rearm_timer()

    def _rearm_timer(self) -> None:
        when = self._sched.next_deadline()
        if when == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = when
        if when is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, when - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_when = None, None
        self._pump()


def _upstream_ids(job: Job) -> frozenset[str]:
    """Ids of the jobs whose futures are among ``job``'s arguments."""
    ids = [a.job_id for a in job.args if isinstance(a, JobFuture)]
    if job.kwargs:
        ids += [v.job_id for v in job.kwargs.values() if isinstance(v, JobFuture)]
    return frozenset(ids) if ids else _NO_IDS


_start_up_classes: dict[type, bool] = {}


def _has_start_up(cls: type) -> bool:
    """Whether job class ``cls`` has a start-up phase that ``submit`` waits for (``wait_started``)."""
    known = _start_up_classes.get(cls)
    if known is None:
        known = (cls.wait_started is not Job.wait_started  # type: ignore[attr-defined]
                 or cls.wait_started_async is not Job.wait_started_async)  # type: ignore[attr-defined]
        _start_up_classes[cls] = known
    return known
