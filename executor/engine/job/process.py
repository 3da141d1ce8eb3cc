"""ProcessJob: runs its function in one of the engine's warm worker processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import typing as T

import cloudpickle

from .base import GeneratorDriver, Job

if T.TYPE_CHECKING:  # pragma: no cover
    from ..backend.process import ProcessPool, Worker
    from ..core import Engine
    from pathlib import Path

    from .condition import Condition
    from ..state import WorkerState


class ProcessGeneratorDriver(GeneratorDriver):
    """Steps a generator that lives in a worker process; the worker stays with the job."""

    def __init__(self, engine: "Engine", pool: "ProcessPool", worker: "Worker") -> None:
        self.engine = engine
        self.pool = pool
        self.worker = worker
        self.is_async = False

    def step(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Step from any thread except the engine's loop thread."""
        loop = self.pool.loop
        if self.engine._in_loop_thread():
            raise RuntimeError(
                "a ProcessJob generator cannot be iterated synchronously on the engine's event "
                "loop; use an async generator function and `async for`, or iterate from another thread")
        return asyncio.run_coroutine_threadsafe(self._step(op, value), loop).result()

    async def astep(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Step from a coroutine (on the engine loop or any other loop)."""
        if asyncio.get_running_loop() is self.pool.loop:
            return await self._step(op, value)
        cf: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(self._step(op, value), self.pool.loop)
        return await asyncio.wrap_future(cf)

    async def _step(self, op: str, value: T.Any) -> tuple[str, T.Any]:
        from ..backend.process import _unwrap

        try:
            reply = await self.pool.request(self.worker, cloudpickle.dumps(("step", op, value)))
        except BaseException:
            self.pool.discard_if_dead(self.worker)
            raise
        if reply[0] == "err":
            self.pool.release(self.worker)
            _unwrap(reply)
        if reply[0] == "return":
            self.pool.release(self.worker)
        return (reply[0], reply[1])

    def abandon(self) -> None:
        """The job was cancelled: kill the worker holding the generator."""
        self.pool.kill(self.worker)


class ProcessJob(Job):
    """A job run in a warm worker process; limited by ``EngineSetting.max_process_jobs``.

    Functions, arguments and results travel with cloudpickle, so lambdas and
    functions defined in ``__main__`` work.  Cancelling a running ProcessJob
    kills its worker (and the worker's process group); the pool starts a
    fresh one.  The engine cannot be injected into a ProcessJob.

    Routing (all optional): ``state=`` a :class:`~executor.engine.state.WorkerState`:
    the function is called as ``func(value, *args, **kwargs)`` on a worker
    holding that state; ``worker=`` a worker id or pid to run on while it is
    alive (else anywhere); ``affinity=`` a hashable key: prefer the worker
    that last ran a job with that key.  A worker that dies fails the job with
    :class:`~executor.engine.job.utils.WorkerCrashedError` (``exitcode``,
    ``signal``); an attempt the engine times out (``_timed_out`` set, then
    cancelled) stops its worker with a stack dump and fails with
    :class:`~executor.engine.job.utils.WorkerTimeoutError`.
    """

    resource_kind = "process"
    accepts_engine = False

    state: "WorkerState | None" = None
    """The worker state the function gets as its first argument (``state=``)."""
    worker: T.Optional[int] = None
    """The worker id or pid the job should run on while it is alive (``worker=``)."""
    affinity: T.Hashable = None
    """Prefer the worker that last ran a job with this key (``affinity=``)."""
    _ran_on: T.Optional[tuple[int, int, T.Any]] = None  # (pid, worker id, info): one attribute, jobs stay small

    @property
    def worker_pid(self) -> T.Optional[int]:
        """Pid of the worker process that ran (or runs) the latest attempt."""
        return self._ran_on[0] if self._ran_on is not None else None

    @property
    def worker_id(self) -> T.Optional[int]:
        """Pool-wide id of that worker (stable for its life, never reused; pass it as ``worker=``)."""
        return self._ran_on[1] if self._ran_on is not None else None

    @property
    def worker_info(self) -> T.Any:
        """What the job's hosted state sent with ``serve(value, info=...)`` on that worker."""
        return self._ran_on[2] if self._ran_on is not None else None

    def __init__(
        self,
        func: T.Callable[..., T.Any],
        args: T.Optional[T.Sequence[T.Any]] = None,
        kwargs: T.Optional[T.Mapping[str, T.Any]] = None,
        callback: T.Optional[T.Callable[[T.Any], T.Any]] = None,
        error_callback: T.Optional[T.Callable[[BaseException], T.Any]] = None,
        retries: int = 0,
        retry_time_delta: float = 0.0,
        name: T.Optional[str] = None,
        condition: T.Optional["Condition"] = None,
        wait_time_delta: float = 0.01,
        redirect_out_err: T.Union[bool, str] = False,
        change_dir: T.Union[bool, str, "Path", None] = False,
        *,
        state: "WorkerState | None" = None,
        worker: T.Optional[int] = None,
        affinity: T.Hashable = None,
        **attrs: T.Any,
    ) -> None:
        from ..state import WorkerState

        if state is not None and not isinstance(state, WorkerState):
            raise TypeError(f"ProcessJob state= must be a WorkerState, got {state!r}")
        if worker is not None and (not isinstance(worker, int) or isinstance(worker, bool)):
            raise TypeError(f"ProcessJob worker= must be a worker id or pid (int), got {worker!r}")
        try:
            hash(affinity)
        except TypeError:
            raise TypeError(f"ProcessJob affinity= must be hashable, got {affinity!r}") from None
        super().__init__(func, args, kwargs, callback, error_callback, retries, retry_time_delta, name, condition,
                         wait_time_delta, redirect_out_err, change_dir, **attrs)
        # set only when given: unrouted jobs keep no extra instance attributes
        if state is not None:
            self.state = state
        if worker is not None:
            self.worker = worker
        if affinity is not None:
            self.affinity = affinity

    def _remember_worker(self, worker: "Worker") -> None:
        state = self.state
        self._ran_on = (worker.pid, worker.wid, worker.infos.get(state.key) if state is not None else None)

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Run the call in a worker of the engine's process pool."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        assert self.engine is not None
        return await self.engine.process_pool.run(
            func, args, kwargs, on_worker=self._remember_worker, state=self.state,
            worker=self.worker, affinity=self.affinity,
            timed_out=self._attempt_timed_out)

    def _attempt_timed_out(self) -> bool:
        """Whether the engine cancelled the running attempt because it timed out (it sets ``_timed_out``)."""
        return bool(getattr(self, "_timed_out", False))

    async def start_generator(
        self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict
    ) -> GeneratorDriver:
        """Create the generator in a worker, which then serves this job only."""
        from ..backend.process import _unwrap

        assert self.engine is not None
        pool = self.engine.process_pool
        payload = cloudpickle.dumps(("gen", func, args, kwargs))
        worker = await pool.acquire()
        self._remember_worker(worker)
        try:
            reply = await pool.request(worker, payload)
        except asyncio.CancelledError:
            pool.kill(worker)
            raise
        if reply[0] == "err":
            pool.release(worker)
            _unwrap(reply)
        return ProcessGeneratorDriver(self.engine, pool, worker)
