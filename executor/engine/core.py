"""The :class:`Engine` (and, for upstream's import path, :class:`EngineSetting`).

The engine owns an asyncio loop — its own daemon thread in sync use
(``start()``/``stop()``/``with``), or the caller's running loop in async use
(``await engine.submit_async(...)``).  Every state change happens on that loop;
calls from other threads hop onto it.  Decisions about what may start are made
by the pure :class:`~executor.engine._scheduler.Scheduler`.

The class is built in layers, one module each (see :mod:`._loop_bridge`):
the loop bridge, job lifecycle (:mod:`._lifecycle`), the fast path
(:mod:`._fast_path`), submission (:mod:`._submitting`), cancel and wait
(:mod:`._waiting`); this module adds construction, the backends (opened by
resource kind through :mod:`.backend._registry`) and start/stop.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import typing as T
import uuid
from pathlib import Path

from ._caller import CallerLane
from ._driving import Driving
from ._engine_stack import pop_default_engine, push_default_engine
from ._loop_bridge import StatusListener, live_engines, release_command_watchdog
from ._scheduler import Scheduler
from ._setting import EngineSetting
from ._upstream_engine import Resource, UpstreamEngineAPI
from .backend._registry import before_start, close_backends, close_backends_now, open_backend
from .job.base import Job
from .job.utils import InvalidStateError, JobEmitError, default_cache_root
from .manager import Jobs

if T.TYPE_CHECKING:  # pragma: no cover
    from .backend.dask import DaskBackend
    from .backend.process import ProcessPool, SpareZygote
    from .backend.thread import ThreadBackend

__all__ = ["Engine", "EngineSetting", "Resource", "InvalidStateError", "JobEmitError"]


class Engine(Driving, UpstreamEngineAPI):
    """Runs jobs: ``submit`` them, ``wait``/``join`` for them, ``cancel`` them.

    Sync use: ``with Engine() as engine: engine.submit(job); engine.wait()``.
    Async use: ``await engine.submit_async(job); await engine.join()``.

    Beyond upstream's API: ``add_listener``/``remove_listener`` (follow job
    status changes), ``serve_caller`` (run CallerJob bodies on the waiting
    thread), ``start(loop_thread=False)`` (no loop thread: the loop runs on
    the thread that waits, see :mod:`executor.engine._driving`), and the jobs'
    ``timeout=`` and ``exclusive=`` options.
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
        # The default's private root is made (and checked) on first use of cache_dir, not here: an engine
        # whose jobs never need a cache dir (the pytest plugin's) leaves nothing in the temp dir.
        self._cache_dir = Path(self.setting.cache_path).absolute() if self.setting.cache_path else None
        if jobs is None:
            jobs = Jobs(self.cache_dir, "diskcache") if self.setting.cache_type == "diskcache" else Jobs()
        self.jobs = jobs
        self._loop: T.Optional[asyncio.AbstractEventLoop] = loop
        self._loop_thread_id: T.Optional[int] = None
        self._thread: T.Optional[threading.Thread] = None
        self._driver: T.Optional[int] = None
        self._caller_queue: collections.deque[Job] = collections.deque()
        self._sched: Scheduler[Job] = self._new_scheduler()
        self._backends: dict[str, T.Any] = {}
        self._spare_zygote: T.Optional["SpareZygote"] = None  # forked by start(), adopted by the pool
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
        # told of every status change, on the loop thread (see add_listener)
        self._status_listeners: list[StatusListener] = []
        self._callers = CallerLane()
        # ThreadJobs of the fast path whose call returned, finished in bulk after each backend batch
        self._thread_results: list[Job] = []

    # ------------------------------------------------------------ properties
    @property
    def cache_dir(self) -> Path:
        """Where job cache dirs (and the job store) live; created only when needed.

        By default ``<system temp dir>/executor-engine-<uid>/<engine id>``: that private root is
        made the first time this is read.
        """
        if self._cache_dir is None:
            self._cache_dir = (default_cache_root() / self.id).absolute()
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
        if self._driver is not None:
            return not self._stopping
        return self._loop is not None and self._loop.is_running() and not self._stopping

    @property
    def thread_backend(self) -> "ThreadBackend":
        """The reused thread pool of ThreadJobs (created on first use)."""
        return T.cast("ThreadBackend", open_backend(self, "thread"))

    @property
    def process_pool(self) -> "ProcessPool":
        """The warm worker-process pool of ProcessJobs (created on first use, on the engine loop)."""
        return T.cast("ProcessPool", open_backend(self, "process"))

    @property
    def dask_backend(self) -> "DaskBackend":
        """The dask backend of DaskJobs (its client/cluster start on the first DaskJob)."""
        return T.cast("DaskBackend", open_backend(self, "dask"))

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
    def start(self, loop_thread: bool = True) -> None:
        """Start the engine's loop in a daemon thread (sync use).

        ``loop_thread=False``: start no thread; the loop runs on this thread
        while it waits in ``serve_caller``/``wait``/``wait_job``, and CallerJobs
        run back to back on it (see :mod:`executor.engine._driving`).  Such an
        engine is used from this thread only, and starts in well under a
        millisecond (it forks no zygote for a process pool ahead of time).
        """
        if self._thread is not None or self._driver is not None:
            return
        if self._loop is not None and self._loop.is_running():
            raise RuntimeError("this engine already runs on an event loop (async use); no start() needed")
        self._release_closed_loop()
        if not loop_thread:
            self._start_driven()
            return
        before_start(self)  # before the loop thread exists: fork is safe only single-threaded
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=self._run_loop, args=(loop, ready), daemon=True,
                                  name=f"executor-engine-{self.id[:8]}")
        thread.start()
        ready.wait()
        self._loop, self._thread, self._stopping = loop, thread, False
        live_engines.add(self)

    def stop(self) -> None:
        """Cancel what is still pending or running, shut the pools down, end the loop thread.

        Worker processes of cancelled ProcessJobs are killed.  Running
        ThreadJobs cannot be killed (no Python thread can): they are abandoned,
        not waited for; their daemon threads end when their functions return.
        """
        loop, thread = self._loop, self._thread
        if self._driver is not None:
            self._stop_driven()
        elif thread is not None and loop is not None:
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
        live_engines.discard(self)
        if not live_engines:
            release_command_watchdog()

    async def _shutdown(self) -> None:
        tasks = self._cancel_now(list(self.jobs.pending.values()) + list(self.jobs.running.values()))
        self._stopping = True
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await close_backends(self)
        self._shutdown_now()

    def _shutdown_now(self) -> None:
        """Synchronous part of the shutdown (safe to call more than once)."""
        if self._loop is not None and not self._loop.is_closed() and self._in_loop_thread():
            self._cancel_now(list(self.jobs.pending.values()) + list(self.jobs.running.values()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_when = None, None
        self._caller_queue.clear()
        while self._inline:  # cancelled above; drop them so that a rerun queues them again
            job = self._inline.popleft()
            if job._queued is self:
                job._queued = None
        close_backends_now(self)

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

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<Engine {self.id[:8]} {state} {self.jobs!r}>"
