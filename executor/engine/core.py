"""The :class:`Engine` and its :class:`EngineSetting`.

The engine owns an asyncio loop — its own daemon thread in sync use
(``start()``/``stop()``/``with``), or the caller's running loop in async use
(``await engine.submit_async(...)``).  Every state change happens on that loop;
calls from other threads hop onto it.  Decisions about what may start are made
by the pure :class:`~executor.engine._scheduler.Scheduler`; this module only
turns them into status changes and backend calls.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextvars
import inspect
import sys
import threading
import time
import typing as T
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._scheduler import Scheduler
from ._upstream_engine import Resource, UpstreamEngineAPI
from .job._upstream_api import overrides_cancel, overrides_status_hooks, uses_upstream_hooks
from .job.base import _NO_IDS, Job, JobFuture, _ProxyBase, func_traits
from .job.condition import AfterOthers, AllSatisfied, Condition
from ._engine_stack import pop_default_engine, push_default_engine
from .job.utils import ACTIVE_STATUSES, FINISHED_STATUSES, InvalidStateError, JobEmitError, JobStatusType, default_cache_root
from .log import logger
from .manager import Jobs

if T.TYPE_CHECKING:  # pragma: no cover
    from .backend.process import ProcessPool, SpareZygote
    from .backend.dask import DaskBackend
    from .backend.thread import ThreadBackend
    from .job.thread import ThreadJob

__all__ = ["Engine", "EngineSetting", "Resource"]

_FINISHED = frozenset(FINISHED_STATUSES)
_CHUNK = 256
"""Jobs of one submit() registered and started together (see ``Engine._submit_now``)."""
_PLAIN_RESULTS = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set})
"""Result types that are never awaitable (skips the slower ``inspect.isawaitable``)."""
_INLINE, _ON_THREAD, _OWN_THREAD_CALL = 1, 2, 3
"""Fast paths of an attempt (see :func:`_fast_path`); 0 means a Task runs ``job._execute``.
``_OWN_THREAD_CALL`` (per class only): ``_ON_THREAD`` whatever the job's options and function."""
_PROCESS_JOB_MODULE = "executor.engine.job.process"
"""Loaded once the program imported ProcessJob: a sign that ProcessJobs will run (see ``fork_zygote``)."""
_fast_classes: dict[type, int] = {}
"""Per job class: the fast path its plain calls may take (0: none, the class runs them its own way)."""


def _defining_class(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose own namespace defines attribute ``name``."""
    return next(klass for klass in cls.__mro__ if name in vars(klass))


def _class_fast_path(cls: type[Job]) -> int:
    from .job.thread import ThreadJob

    if cls._execute is not Job._execute or uses_upstream_hooks(cls):
        return 0
    if issubclass(cls, ThreadJob) and cls.thread_call is not ThreadJob.thread_call:
        # its thread_call covers the attempt, unless run_function/call_options were overridden below it
        hook = _defining_class(cls, "thread_call")
        if all(issubclass(hook, _defining_class(cls, name)) for name in ("run_function", "call_options")):
            return _OWN_THREAD_CALL
        return 0
    if cls.call_options is not Job.call_options:
        return 0
    if cls.run_function is Job.run_function:
        return _INLINE
    if issubclass(cls, ThreadJob) and cls.run_function is ThreadJob.run_function:
        return _ON_THREAD
    return 0


def _fast_path(job: Job) -> int:
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
    """
    cls = type(job)
    path = _fast_classes.get(cls)
    if path is None:
        path = _fast_classes[cls] = _class_fast_path(cls)
    if path == _OWN_THREAD_CALL:
        return _ON_THREAD
    if not path or job.change_dir or job.redirect_out_err:
        return 0
    traits = func_traits(job.func)
    if traits.generator or (path == _INLINE and traits.coroutine):
        return 0
    return path


@dataclass
class EngineSetting:
    """Limits and options of an :class:`Engine`.

    Attributes:
        max_thread_jobs: running ThreadJobs at most (None: only ``max_jobs`` limits).
        max_process_jobs: running ProcessJobs at most, i.e. the process pool size.
        max_dask_jobs: running DaskJobs at most.
        max_jobs: running jobs of all kinds at most (None: unlimited).
        cache_type: ``"none"`` or ``"diskcache"`` (persist jobs in an SQLite store).
        cache_path: directory for job cache dirs and the store
            (default: ``<system temp dir>/executor-engine-<uid>/<engine id>``,
            created only when needed; never the working directory).
        print_traceback: log the traceback of failed jobs (at ERROR level).
        kwargs_inject_key: a job function taking a keyword of this name gets the engine.
        fork_zygote: let ``start()`` fork the process pool's zygote from this
            process, if it is single-threaded at that moment (before the
            engine's own thread starts), so that the first ProcessJobs do not
            wait for a new interpreter (a cold pool then starts as fast as a
            forked ``ProcessPoolExecutor``).  True: whenever it is safe.
            None (default): whenever it is safe and ProcessJobs may run, i.e.
            ``max_process_jobs`` is set or :class:`ProcessJob` has been
            imported by then (a fork and, at ``stop()``, reaping the unused
            zygote cost an engine that never runs a ProcessJob a few
            milliseconds).  False: never; the pool then starts its zygote with
            ``python -c`` on first use, as it does when forking is unsafe
            (other threads alive, not Linux).  In async use without ``start()``
            the zygote is forked on the first ProcessJob, if the loop's thread
            is the only one then.
    """

    max_thread_jobs: T.Optional[int] = None
    max_process_jobs: T.Optional[int] = None
    max_dask_jobs: T.Optional[int] = None
    max_jobs: T.Optional[int] = 20
    cache_type: T.Literal["none", "diskcache"] = "none"
    cache_path: T.Optional[str] = None
    print_traceback: bool = True
    kwargs_inject_key: str = "__engine__"
    fork_zygote: T.Optional[bool] = None

    def __post_init__(self) -> None:
        for name in ("max_thread_jobs", "max_process_jobs", "max_dask_jobs", "max_jobs"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EngineSetting.{name} must be a positive int or None, got {value!r}")
        if self.cache_type not in ("none", "diskcache"):
            raise ValueError(f"EngineSetting.cache_type must be 'none' or 'diskcache', got {self.cache_type!r}")
        if not isinstance(self.kwargs_inject_key, str):
            raise TypeError(f"EngineSetting.kwargs_inject_key must be a str, got {self.kwargs_inject_key!r}")
        if self.fork_zygote is not None and not isinstance(self.fork_zygote, bool):
            raise TypeError(f"EngineSetting.fork_zygote must be True, False or None, got {self.fork_zygote!r}")

    def limit_for(self, kind: str) -> T.Optional[int]:
        """The running-jobs limit of a resource kind (``max_<kind>_jobs``), capped by ``max_jobs``."""
        own = getattr(self, f"max_{kind}_jobs", None)
        if own is None:
            return self.max_jobs
        return own if self.max_jobs is None else min(own, self.max_jobs)


_live_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _stop_live_engines() -> None:
    for engine in list(_live_engines):
        try:
            engine.stop()
        except Exception:  # best effort at interpreter exit
            pass


def _release_command_watchdog() -> None:
    # The watchdog of running commands (job/extend/_reaper.py) goes with the last engine, if no
    # command runs any more; looked up, not imported: most programs never start a command.
    reaper = sys.modules.get("executor.engine.job.extend._reaper")
    if reaper is not None:
        reaper.close_idle_guard()


class Engine(UpstreamEngineAPI):
    """Runs jobs: ``submit`` them, ``wait``/``join`` for them, ``cancel`` them.

    Sync use: ``with Engine() as engine: engine.submit(job); engine.wait()``.
    Async use: ``await engine.submit_async(job); await engine.join()``.
    """

    def __init__(self, setting: T.Optional[EngineSetting] = None, jobs: T.Optional[Jobs] = None,
                 loop: T.Optional[asyncio.AbstractEventLoop] = None) -> None:
        if setting is not None and not isinstance(setting, EngineSetting):
            raise TypeError(f"setting must be an EngineSetting, got {type(setting).__name__}")
        if jobs is not None and not isinstance(jobs, Jobs):
            raise TypeError(f"jobs must be a Jobs manager, got {type(jobs).__name__}")
        self.id = str(uuid.uuid4())
        self.setting = setting if setting is not None else EngineSetting()
        self.setup_by_setting()
        base = Path(self.setting.cache_path) if self.setting.cache_path else default_cache_root() / self.id
        self._cache_dir = base.absolute()
        if jobs is None:
            jobs = Jobs(self._cache_dir, "diskcache") if self.setting.cache_type == "diskcache" else Jobs()
        self.jobs = jobs
        self._loop: T.Optional[asyncio.AbstractEventLoop] = loop
        self._loop_thread_id: T.Optional[int] = None
        self._thread: T.Optional[threading.Thread] = None
        self._sched: Scheduler[Job] = self._new_scheduler()
        self._thread_backend: T.Optional["ThreadBackend"] = None
        self._process_pool: T.Optional["ProcessPool"] = None
        self._spare_zygote: T.Optional["SpareZygote"] = None  # forked by start(), adopted by the pool
        self._dask_backend: T.Optional["DaskBackend"] = None
        self._idle_waiters: list[asyncio.Future] = []
        self._timer: T.Optional[asyncio.TimerHandle] = None
        self._timer_when: T.Optional[float] = None
        self._pumping = False
        self._stopping = False
        # started jobs whose attempt is a plain call: run in batches by one loop callback, no Task each
        self._inline: collections.deque[Job] = collections.deque()
        self._inline_scheduled = False
        self._submitting = False
        self._default_tokens: list[T.Any] = []
        # told of every status change, on the loop thread (SentinelJob watches jobs through it)
        self._status_listeners: list[T.Callable[[Job], None]] = []
        # ThreadJobs of the fast path whose call returned, finished in bulk after each backend batch
        self._thread_results: list[Job] = []

    # ------------------------------------------------------------ properties
    @property
    def cache_dir(self) -> Path:
        """Where job cache dirs (and the job store) live; created only when needed."""
        return self._cache_dir

    @property
    def loop(self) -> T.Optional[asyncio.AbstractEventLoop]:
        """The event loop the engine runs on (None before start / first async submit)."""
        return self._loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` (upstream's way to choose the loop); not while the engine runs on another one."""
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
        if self._thread is not None or (self._loop is not None and self._loop.is_running() and loop is not self._loop):
            raise RuntimeError("the engine runs on an event loop already; set engine.loop before start()")
        self._loop = loop

    @property
    def is_running(self) -> bool:
        """True while the engine's loop runs and it accepts jobs."""
        return self._loop is not None and self._loop.is_running() and not self._stopping

    @property
    def thread_backend(self) -> "ThreadBackend":
        """The reused thread pool of ThreadJobs (created on first use)."""
        if self._thread_backend is None:
            from .backend.thread import ThreadBackend

            self._thread_backend = ThreadBackend(self.setting.limit_for("thread") or 32, self._loop,
                                                 self._after_thread_batch)
        return self._thread_backend

    @property
    def process_pool(self) -> "ProcessPool":
        """The warm worker-process pool of ProcessJobs (created on first use, on the engine loop)."""
        if self._process_pool is None:
            from .backend.process import ProcessPool

            assert self._loop is not None, "the process pool needs the engine loop"
            if self._thread is None:  # async use: no start(); the caller's thread may be the only one
                self._fork_spare_zygote()
            spare, self._spare_zygote = self._spare_zygote, None
            self._process_pool = ProcessPool(self.setting.limit_for("process") or 32, self._loop, spare)
        return self._process_pool

    @property
    def dask_backend(self) -> "DaskBackend":
        """The dask backend of DaskJobs (its client/cluster start on the first DaskJob)."""
        if self._dask_backend is None:
            from .backend.dask import DaskBackend

            self._dask_backend = DaskBackend()
        return self._dask_backend

    @property
    def dask_client(self) -> T.Any:
        """The asynchronous ``distributed.Client`` that DaskJobs use.

        As upstream, reading it before any DaskJob ran starts the engine's own
        LocalCluster (or connects to the address that was set) and returns its
        client.  That start blocks, so from a coroutine on the engine's loop
        ``await engine.dask_backend.get_client()`` instead.  None while the
        engine is not running (nothing to start the cluster on).
        """
        backend = self.dask_backend
        if backend.client is not None:
            return backend.client
        if self._loop is None or not self._loop.is_running():
            return None
        if self._in_loop_thread():
            raise RuntimeError(
                "engine.dask_client would block the engine's loop while it starts the dask cluster: "
                "from a coroutine, use `await engine.dask_backend.get_client()`"
            )
        return self._call_on_loop_async(backend.get_client)

    @dask_client.setter
    def dask_client(self, client: T.Any) -> None:
        """Set an asynchronous ``distributed.Client`` or a scheduler address.

        A synchronous client raises ValueError; anything that is no client
        raises :class:`~executor.engine.backend.dask.NotADaskClientError`
        (both a ValueError and, as upstream, an AttributeError).
        """
        self.dask_backend.set_client(client)

    # -------------------------------------------------------- start / stop
    def start(self) -> None:
        """Start the engine's loop in a daemon thread (sync use)."""
        if self._thread is not None:
            return
        if self._loop is not None and self._loop.is_running():
            raise RuntimeError("this engine already runs on an event loop (async use); no start() needed")
        self._release_closed_loop()
        self._fork_spare_zygote()  # before the loop thread exists: fork is safe only single-threaded
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=self._run_loop, args=(loop, ready), daemon=True,
                                  name=f"executor-engine-{self.id[:8]}")
        thread.start()
        ready.wait()
        self._loop, self._thread, self._stopping = loop, thread, False
        _live_engines.add(self)

    def _fork_spare_zygote(self) -> None:
        """Fork the process pool's zygote now if that is safe (see :func:`~.backend.process.can_fork_zygote`).

        A forked zygote costs about a millisecond here; starting one later
        from the loop thread (where forking is unsafe) means an interpreter
        start plus imports, tens of milliseconds on the first ProcessJob.
        """
        wanted = self.setting.fork_zygote
        if wanted is None:
            wanted = self.setting.max_process_jobs is not None or _PROCESS_JOB_MODULE in sys.modules
        if not wanted or self._spare_zygote is not None:
            return
        from .backend.process import can_fork_zygote, fork_zygote

        if can_fork_zygote():
            self._spare_zygote = fork_zygote()

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._loop_thread_id = threading.get_ident()
        loop.call_soon(ready.set)
        loop.run_forever()

    def stop(self) -> None:
        """Cancel what is still pending or running, shut the pools down, end the loop thread.

        Worker processes of cancelled ProcessJobs are killed.  Running
        ThreadJobs cannot be killed (no Python thread can): they are abandoned,
        not waited for; their daemon threads end when their functions return.
        """
        loop, thread = self._loop, self._thread
        if thread is not None and loop is not None:
            if threading.get_ident() == self._loop_thread_id:
                raise RuntimeError("engine.stop() cannot be called from a job running on the engine loop")
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._thread = None
            self._loop = None
            self._sched = self._new_scheduler()
        elif loop is not None and loop.is_running() and self._in_loop_thread():
            self._shutdown_now()
        else:
            self._shutdown_now()
        self._stopping = False
        _live_engines.discard(self)
        if not _live_engines:
            _release_command_watchdog()

    async def _shutdown(self) -> None:
        tasks = self._cancel_now(list(self.jobs.pending.values()) + list(self.jobs.running.values()))
        self._stopping = True
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._dask_backend is not None:
            backend, self._dask_backend = self._dask_backend, None
            try:
                await asyncio.wait_for(backend.close(), 30)
            except Exception as exc:  # a stuck cluster must not block stop()
                logger.warning(f"closing the dask backend failed: {exc!r}")
        self._shutdown_now()

    def _shutdown_now(self) -> None:
        """Synchronous part of the shutdown (safe to call more than once)."""
        if self._loop is not None and not self._loop.is_closed() and self._in_loop_thread():
            self._cancel_now(list(self.jobs.pending.values()) + list(self.jobs.running.values()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_when = None, None
        while self._inline:  # cancelled above; drop them so that a rerun queues them again
            job = self._inline.popleft()
            if job._queued is self:
                job._queued = None
        if self._process_pool is not None:
            self._process_pool.shutdown()
            self._process_pool = None
        if self._spare_zygote is not None:
            spare, self._spare_zygote = self._spare_zygote, None
            spare.close()
        if self._thread_backend is not None:
            self._thread_backend.shutdown()
            self._thread_backend = None
        if self._dask_backend is not None:
            self._close_dask_backend_soon()

    def _close_dask_backend_soon(self) -> None:
        """Close the dask backend without awaiting (sync stop on a loop that keeps running)."""
        backend, self._dask_backend = self._dask_backend, None
        loop = self._loop
        if backend is not None and loop is not None and not loop.is_closed() and loop.is_running():
            from .backend.dask import close_soon

            close_soon(backend, loop)

    def __enter__(self) -> "Engine":
        self.start()
        self._default_tokens.append(push_default_engine(self))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._default_tokens:
                pop_default_engine(self._default_tokens.pop())

    async def __aenter__(self) -> "Engine":
        self._bind(asyncio.get_running_loop())
        self._default_tokens.append(push_default_engine(self))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._shutdown()
        finally:
            if self._default_tokens:
                pop_default_engine(self._default_tokens.pop())

    # -------------------------------------------------------------- submit
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
        if loop is None or not loop.is_running() or self._stopping:
            _check_jobs(jobs)
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
        size = _CHUNK if all(c is None for c in conditions) else len(jobs)
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
                            poll_interval=job.wait_time_delta, cancel_on=job._upstream)
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
        job.prepare(self)
        job._upstream = upstream
        return condition

    def _register(self, job: Job) -> None:
        if job._status in _FINISHED:  # a rerun
            job._result = None
            job._exception = None
            job._traceback = None
            job._proxy = None
            job.start_time = job.stop_time = None
        job.attempts = 0
        if job._cancel_requested:
            job._cancel_requested = False
        job.engine = self
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
                    logger.info(f"job {job.name} ({job.id}) cancelled: {reason}")
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

    def _start_many(self, jobs: list[Job]) -> None:
        """Start jobs the scheduler gave a slot: plain calls go to the inline queue or
        straight to the thread backend, others get a Task."""
        loop = self._loop
        assert loop is not None
        started = datetime.now()  # one scheduling round: one start time
        paths = [_fast_path(job) for job in jobs]
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
            elif path == _ON_THREAD:
                on_thread.append(job)
            elif job._queued is not self:  # else a rerun found its entry still queued: that one runs it
                job._queued = self
                queue.append(job)
        if queue and not self._inline_scheduled:
            self._inline_scheduled = True
            loop.call_soon(self._run_inline_batch)
        if on_thread:
            self._start_on_threads(on_thread)

    def _start_on_threads(self, jobs: list[Job]) -> None:
        """Hand plain ThreadJob calls to the thread backend; :meth:`_thread_call_done` takes the results."""
        backend = self.thread_backend
        done = self._thread_call_done
        for job in jobs:
            try:
                func, args, kwargs = T.cast("ThreadJob", job).thread_call(*job._resolved_call(self))
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
                _safe_callback(job, job.callback, job._result)
        self._wake_idle_waiters()

    def _wake_idle_waiters(self) -> None:
        """Resolve ``join()``s waiting for all jobs, once no job is active (and no submit is half-way)."""
        if self._idle_waiters and not self._submitting and self.jobs.active_count == 0:
            idle, self._idle_waiters = self._idle_waiters, []
            for fut in idle:
                if not fut.done():
                    fut.set_result(None)

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
            func, args, kwargs = job._resolved_call(self)
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

    async def _run_awaitable(self, job: Job, awaitable: T.Awaitable[T.Any]) -> T.Any:
        async def attempt(_engine: "Engine") -> T.Any:
            return await awaitable

        return await self._run(job, attempt)

    async def _run(self, job: Job,
                   attempt: T.Optional[T.Callable[["Engine"], T.Awaitable[T.Any]]] = None) -> None:
        try:
            result = await (attempt or job._execute)(self)
            if overrides_status_hooks(type(job)) and job.status == "running" and not isinstance(result, _ProxyBase):
                # upstream's outcome hook ends the attempt (its base form calls _finish_attempt)
                await job.on_done(result)
                return
        except asyncio.CancelledError:
            if job.status == "running":  # cancelled by the loop going away, not by us
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
            job._task = None
        if job.status != "running":  # cancelled while finishing
            return
        if isinstance(result, _ProxyBase):
            return  # a generator job runs until its proxy is exhausted
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
            logger.info(f"job {job.name} ({job.id}) failed with {exc!r}; "
                        f"retry {job.attempts}/{job.retries} in {job.retry_time_delta} s")
            self._set_status(job, "pending")
            self._sched.add(job, job.id, job.resource_kind, None, time.time(),
                            not_before=time.time() + job.retry_time_delta)
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
            logger.debug(f"job {job.name} ({job.id}) failed{where}: {exc!r}")

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
            _safe_callback(job, job.callback, job._result)
        elif status == "failed" and job.error_callback is not None and job._exception is not None:
            _safe_callback(job, job.error_callback, job._exception)

    def _set_status_many(self, jobs: T.Sequence[Job], status: JobStatusType) -> None:
        """:meth:`_set_status` for each job, in bulk when no listener or waiting job needs telling."""
        if self._status_listeners or self._sched.watching_any or status in _FINISHED:
            for job in jobs:
                self._set_status(job, status)
        else:
            self.jobs.set_status_many(jobs, status)

    def _set_status(self, job: Job, status: JobStatusType) -> None:
        old = job._status
        job._status = status
        self.jobs.moved(job, old)
        sched = self._sched
        if sched.is_watched(job.id):
            sched.job_changed(job.id, time.time())
        if self._status_listeners:
            for listener in self._status_listeners:
                listener(job)
        if status in _FINISHED:
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

    # -------------------------------------------------------------- cancel
    def cancel(self, *jobs: Job) -> None:
        """Cancel jobs; returns once they are cancelled and their workers are stopped."""
        _check_jobs(jobs)
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
                    self._stop_thread_call(T.cast("ThreadJob", job), tasks)
                proxy = job._proxy
                if proxy is not None and proxy._driver.done() and proxy._driver.exception() is None:
                    proxy._driver.result().abandon()
                if type(job).clear_context is not Job.clear_context:
                    _clear_context(job)
                self._finish(job, "cancelled")
        if not self._pumping:
            self._pump()
        return tasks

    def _stop_thread_call(self, job: "ThreadJob", tasks: list[asyncio.Task]) -> None:
        """Run the job's ``cancel_thread_call`` hook; its stopping coroutine joins ``tasks``.

        Without one, the call is abandoned: a thread cannot be killed, so
        neither ``cancel`` nor ``stop`` waits for it (see ``ThreadBackend.abandon``).
        """
        call = job._thread_call
        try:
            stopping = job.cancel_thread_call()
        except Exception as exc:  # a broken hook must not break cancelling the others
            logger.error(f"cancel_thread_call of job {job.name} ({job.id}) raised {exc!r}")
            stopping = None
        if stopping is None:
            if call is not None and self._thread_backend is not None:
                self._thread_backend.abandon(call)
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
            _check_jobs(jobs)
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
        return bool(self._call_on_loop_async(self._wait_selected, timeout, select_jobs))

    def wait_job(self, job: Job, timeout: T.Optional[float] = None) -> T.Optional[T.Any]:
        """Block until ``job`` finished, or ``timeout`` seconds passed; return its result if it is done.

        As upstream, a timeout is no error: the job keeps running and the
        return value is None (as for a failed or cancelled job).
        """
        _check_jobs([job])
        try:
            self._call_on_loop_async(self._join_here, [job], timeout)
        except TimeoutError:
            return None
        return job.result() if job.status == "done" else None

    # ------------------------------------------------------ loop plumbing
    def _in_loop_thread(self) -> bool:
        loop = self._loop
        if loop is None:
            return False
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
        _live_engines.add(self)

    def _release_closed_loop(self) -> None:
        """Forget a previous loop that is gone (e.g. an earlier ``asyncio.run``)."""
        if self._loop is None or self._thread is not None:
            return
        if self._loop.is_running():
            return
        for job in self._active_jobs():
            self._sched.discard(job)
            job._status, old = "cancelled", job._status
            self.jobs.moved(job, old)
        self._shutdown_now()
        self._timer, self._timer_when = None, None
        self._idle_waiters = []
        self._sched = self._new_scheduler()
        self._loop = None

    def _call_on_loop(self, fn: T.Callable[..., T.Any], *args: T.Any) -> T.Any:
        """Run a sync function on the loop thread and return its result (re-raising)."""
        loop = self._loop
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

    def _call_on_loop_async(self, coro_fn: T.Callable[..., T.Coroutine[T.Any, T.Any, T.Any]], *args: T.Any) -> T.Any:
        """Run a coroutine function on the loop from another thread and block for its result."""
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the engine is not started: use `with Engine()` or engine.start()")
        if self._in_loop_thread():
            raise RuntimeError("this blocking call would deadlock the engine loop; "
                               "use the async form (await engine.join(...)) instead")
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

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<Engine {self.id[:8]} {state} {self.jobs!r}>"


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


def _check_jobs(jobs: T.Iterable[object]) -> None:
    for job in jobs:
        if not isinstance(job, Job):
            raise TypeError(f"expected Job objects, got {type(job).__name__}: {job!r}")


def _safe_callback(job: Job, fn: T.Callable[[T.Any], T.Any], value: T.Any) -> None:
    try:
        outcome = fn(value)
        if outcome is not None and inspect.isawaitable(outcome):  # a coroutine callback: awaited, as upstream
            asyncio.ensure_future(outcome)
    except Exception as exc:  # a broken callback must not break the engine
        logger.error(f"callback {fn!r} of job {job.name} ({job.id}) raised {exc!r}")


def _clear_context(job: Job) -> None:
    """Run a job's ``clear_context`` hook (its running attempt was cancelled)."""
    try:
        job.clear_context()
    except Exception as exc:  # a broken hook must not break cancelling the others
        logger.error(f"clear_context of job {job.name} ({job.id}) raised {exc!r}")


__all__ += ["InvalidStateError", "JobEmitError"]
