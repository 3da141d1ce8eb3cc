"""The :class:`Job` base class (:class:`JobFuture` and the generator proxies are re-exported here).

A job is data plus a few hooks; the :class:`~executor.engine.core.Engine`
drives its life (statuses, retries, callbacks).  See :class:`Job` for the hooks
that job types override.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import os
import traceback
import typing as T
import uuid
from datetime import datetime
from pathlib import Path

import cloudpickle

from ._future import JobFuture, _check_callable
from ._generators import AsyncGeneratorProxy, GeneratorDriver, GeneratorProxy, _ProxyBase
from ._upstream_api import UpstreamJobAPI, register_job_classes, run_upstream_attempt, uses_upstream_hooks
from .condition import Condition
from .utils import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    CallOptions,
    InvalidStateError,
    JobStatusType,
    OptionsCall,
    check_timeout,
    default_cache_root,
    is_generator_function,
)

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

__all__ = ["Job", "JobFuture", "GeneratorDriver", "GeneratorProxy", "AsyncGeneratorProxy"]

_RUNTIME_ATTRS = ("engine", "_task", "_waiters", "_proxy", "_cancel_requested", "_upstream", "_queued",
                  "_thread_call", "_timed_out", "_timeout_timer")
_NO_IDS: frozenset[str] = frozenset()


def _check_attrs(cls: type, attrs: T.Mapping[str, T.Any]) -> None:
    """Refuse extra attributes that look like a misspelt parameter (``retires=1``): upstream would ignore them."""
    known = [name for name in inspect.signature(Job.__init__).parameters if name not in ("self", "attrs")]
    for key in attrs:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        if close:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r} "
                            f"(did you mean {close[0]!r}?); other keywords become job.attrs")


def check_call_args(args: object, kwargs: object) -> None:
    """Refuse ``args`` that is not a tuple or list, and ``kwargs`` that is not a dict (None: none given)."""
    if args is not None and type(args) not in (tuple, list) and (  # plain types first: typing's isinstance is slow
            isinstance(args, (str, bytes)) or not isinstance(args, T.Sequence)):
        raise TypeError(f"args must be a tuple or list of arguments, got {args!r}")
    if kwargs is not None and type(kwargs) is not dict and not isinstance(kwargs, T.Mapping):
        raise TypeError(f"kwargs must be a dict, got {kwargs!r}")


_PER_RUN_STATE = ("_task", "_waiters", "_proxy", "_cancel_requested", "_thread_call", "_timed_out", "_timeout_timer")
"""Attributes of a running job that a copy (unpickled) job does not keep."""


class Job(UpstreamJobAPI):
    """A unit of work: a callable with arguments, run by an engine on some backend.

    Keyword arguments:
        func: the callable (functions, lambdas, closures; coroutine and
            generator functions too).
        args, kwargs: its arguments; a :class:`JobFuture` among them makes the
            job wait for that job and receive its result.
        callback: called with the result when the job is done.
        error_callback: called with the exception when the job failed.
        retries: how many times a failed attempt is retried.
        retry_time_delta: seconds to wait before a retry.
        name: a label (defaults to the function's name).
        condition: a :class:`~executor.engine.job.condition.Condition` that
            must hold before the job starts.
        wait_time_delta: polling period for opaque (custom) conditions only.
        redirect_out_err: True → the job's stdout/stderr go to ``stdout.txt`` /
            ``stderr.txt`` in its cache dir; a path string → both go to that file.
        change_dir: True → run inside the job's cache dir; a path → run there.
        timeout: seconds an attempt may run (None: no limit).  A longer attempt
            is stopped (its Task cancelled, with ``job._timed_out`` set first so
            the job type can stop its work its own way) and fails with
            :class:`~executor.engine.job.utils.JobTimeoutError`; ``retries``
            apply.  Work that cannot be interrupted (a sync function on the
            engine loop, a CallerJob's body) fails the same way when it returns late.
        exclusive: start only when no other job of the engine runs; nothing
            else starts while it runs.
        **attrs: any other attributes of the job (kept in ``job.attrs``, as upstream).

    Hooks for job types (override in subclasses):

    * ``resource_kind`` (class attribute, e.g. ``"process"``): the slot pool the
      job uses; the engine limits running jobs of that kind to
      ``EngineSetting.max_<kind>_jobs`` (if that attribute exists and is not
      None) and all jobs to ``max_jobs``.
    * ``accepts_engine`` (class attribute): whether the function may receive
      the engine through ``EngineSetting.kwargs_inject_key`` (False where the
      call runs in another process).
    * ``prepare(engine)``: called by ``submit`` before the job is registered;
      validate here and raise for bad input.
    * ``async run_function(func, args, kwargs)``: run one attempt of a plain
      call where this job type runs things and return its result (raise to
      fail).  ``func`` already carries ``redirect_out_err``/``change_dir``.
      Cancellation arrives as ``asyncio.CancelledError`` inside this
      coroutine: stop the work (kill the worker, the subprocess, ...) in an
      ``except``/``finally`` and re-raise.
    * ``async start_generator(func, args, kwargs)``: for generator functions,
      create the generator where the job runs and return a
      :class:`GeneratorDriver` that steps it.
    """

    resource_kind: T.ClassVar[str] = "local"
    accepts_engine: T.ClassVar[bool] = True

    # Run-time state that most jobs never change: class-level defaults, set on an instance only when
    # it changes.  CPython keeps instance dicts compact (one shared key table per class) only up to
    # 30 attribute names; past that each job carries a full dict of ~1.6 KB instead of ~0.3 KB, and
    # a large submit runs out of CPU cache.
    _exception: T.Optional[BaseException] = None
    _traceback: T.Optional[str] = None
    _task: T.Optional[asyncio.Task] = None
    _waiters: T.Optional[list[asyncio.Future]] = None  # created by the first join()
    _proxy: T.Optional[_ProxyBase] = None
    _cancel_requested: bool = False
    _thread_call: T.Optional[tuple] = None  # the current attempt's call on the thread backend (fast path)
    _future: T.Optional[JobFuture] = None  # created on first use
    timeout: T.Optional[float] = None
    """Seconds an attempt may run (None: no limit); see the class docstring."""
    exclusive: bool = False
    """Whether the job runs alone (see the class docstring)."""
    _timed_out: bool = False  # set by the engine before it cancels an attempt that ran too long
    _timeout_timer: T.Optional[asyncio.TimerHandle] = None  # the running attempt's timeout

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
        condition: T.Optional[Condition] = None,
        wait_time_delta: float = 0.01,
        redirect_out_err: T.Union[bool, str] = False,
        change_dir: T.Union[bool, str, Path, None] = False,
        timeout: T.Optional[float] = None,
        exclusive: bool = False,
        **attrs: T.Any,
    ) -> None:
        _check_callable(func, "func", optional=False)
        _check_callable(callback, "callback")
        _check_callable(error_callback, "error_callback")
        check_call_args(args, kwargs)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not isinstance(retry_time_delta, (int, float)) or retry_time_delta < 0:
            raise ValueError(f"retry_time_delta must be a number >= 0, got {retry_time_delta!r}")
        if not isinstance(wait_time_delta, (int, float)) or wait_time_delta <= 0:
            raise ValueError(f"wait_time_delta must be a number > 0, got {wait_time_delta!r}")
        if condition is not None and not isinstance(condition, Condition):
            raise TypeError(f"condition must be a Condition, got {type(condition).__name__}: {condition!r}")
        if not isinstance(redirect_out_err, (bool, str, Path)):
            raise TypeError(f"redirect_out_err must be a bool or a file path, got {redirect_out_err!r}")
        if change_dir is not None and not isinstance(change_dir, (bool, str, Path)):
            raise TypeError(f"change_dir must be True or a directory path, got {change_dir!r}")
        if not isinstance(exclusive, bool):
            raise TypeError(f"exclusive must be True or False, got {exclusive!r}")
        if attrs:
            _check_attrs(type(self), attrs)
        if timeout is not None:  # set only when given: see the class-level defaults
            self.timeout = check_timeout(timeout)
        if exclusive:
            self.exclusive = True
        self.id: str = str(uuid.uuid4())
        self.func = func
        self.args: tuple = tuple(args) if args is not None else ()
        self.kwargs: dict[str, T.Any] = dict(kwargs) if kwargs is not None else {}
        self.callback = callback
        self.error_callback = error_callback
        self.retries = retries
        self.retry_time_delta = float(retry_time_delta)
        self.name: str = name if name is not None else getattr(func, "__name__", type(func).__name__)
        self.condition = condition
        self.wait_time_delta = float(wait_time_delta)
        self.redirect_out_err = _redirect_target(redirect_out_err)
        self.change_dir = change_dir
        self.attrs: dict[str, T.Any] = attrs
        self.engine: T.Optional["Engine"] = None
        self.attempts = 0
        self.created_time = datetime.now()
        self.submit_time: T.Optional[datetime] = None
        self.start_time: T.Optional[datetime] = None
        self.stop_time: T.Optional[datetime] = None
        self._status: JobStatusType = "created"
        self._result: T.Any = None
        self._upstream: frozenset[str] = _NO_IDS  # ids of the JobFutures among the arguments (set by submit)
        self._queued: T.Optional["Engine"] = None  # the engine whose inline run queue holds it

    # ------------------------------------------------------------ public API
    @property
    def status(self) -> JobStatusType:
        """One of ``created pending running done failed cancelled``."""
        return self._status

    @property
    def future(self) -> JobFuture:
        """A :class:`JobFuture` to pass as an argument to dependent jobs."""
        future = self._future
        if future is None:
            future = self._future = JobFuture(self.id)
            future._job = self
        return future

    @property
    def cache_dir(self) -> Path:
        """This job's directory under the engine's cache dir (created only when needed)."""
        base = self.engine.cache_dir if self.engine is not None else default_cache_root() / "jobs"
        return base / self.id

    @property
    def traceback(self) -> T.Optional[str]:
        """The formatted traceback of the failure, if the job failed."""
        return self._traceback

    def result(self) -> T.Any:
        """The return value of a ``done`` job (a generator proxy while a generator job runs)."""
        if self._status == "done" or (self._status == "running" and self._proxy is not None):
            return self._proxy if self._proxy is not None else self._result
        if self._status == "failed":
            raise InvalidStateError(
                f"job {self.name} ({self.id}) failed with {self._exception!r}; use exception()"
            ) from self._exception
        raise InvalidStateError(
            f"job {self.name} ({self.id}) is {self._status}; result() needs it to be done"
        )

    def exception(self) -> T.Optional[BaseException]:
        """The exception of a ``failed`` job, else None."""
        return self._exception if self._status == "failed" else None

    async def join(self, timeout: T.Optional[float] = None) -> None:
        """Wait (asynchronously) until the job is done, failed or cancelled, or ``timeout`` seconds passed.

        As upstream, a timeout returns quietly; ``self.status`` tells which it was.
        """
        engine = self._require_engine("join")
        await engine.join([self], timeout=timeout)

    def wait(self, timeout: T.Optional[float] = None) -> None:
        """Block until the job finished or ``timeout`` seconds passed (sync form of :meth:`join`)."""
        self._require_engine("wait").wait_job(self, timeout=timeout)

    async def cancel(self) -> None:
        """Cancel the job (pending: dropped; running: its work is stopped); ``engine.cancel(job)`` from sync code."""
        engine = self._require_engine("cancel")
        await engine._on_loop_async_coro(engine._cancel_own_and_wait, [self])

    async def rerun(self, check_status: bool = True) -> None:
        """Run a finished job again (status goes back to ``pending``); ``engine.submit(job)`` from sync code.

        ``check_status=False`` also accepts a job that is not finished: a
        pending or running job is cancelled first.
        """
        engine = self._require_engine("rerun")
        if self._status not in FINISHED_STATUSES:
            if check_status:
                raise InvalidStateError(f"job {self.id} is {self._status}; only finished jobs can be rerun")
            if self._status in ACTIVE_STATUSES:
                await engine.cancel_async(self)
        await engine.submit_async(self)

    async def rerun_async(self) -> None:
        """Same as :meth:`rerun` (kept for code written against earlier versions of this engine)."""
        await self.rerun()

    @property
    def stoped_time(self) -> T.Optional[datetime]:
        """Upstream's name (sic) of :attr:`stop_time`."""
        return self.stop_time

    def serialization(self) -> bytes:
        """The job as bytes (cloudpickle); runtime links (engine, tasks) are dropped."""
        return cloudpickle.dumps(self)

    @staticmethod
    def deserialization(bytes_: bytes) -> "Job":
        """Rebuild a job from :meth:`serialization` bytes."""
        job = cloudpickle.loads(bytes_)
        if not isinstance(job, Job):
            raise TypeError(f"data does not hold a Job but {type(job).__name__}")
        return job

    def __getstate__(self) -> dict[str, T.Any]:
        state = self.__dict__.copy()
        for attr in _RUNTIME_ATTRS:
            state.pop(attr, None)
        for attr in ("_result", "_exception"):
            try:
                cloudpickle.dumps(state[attr])
            except Exception:
                state[attr] = None
        return state

    def __setstate__(self, state: dict[str, T.Any]) -> None:
        for name in _PER_RUN_STATE:  # back to the class defaults
            state.pop(name, None)
        self.__dict__.update(state)
        self.engine = None
        self._upstream = _NO_IDS
        self._queued = None

    # ----------------------------------------------------------------- hooks
    def prepare(self, engine: "Engine") -> None:
        """Hook: validate against ``engine`` at submit time (raise on bad input)."""

    def wait_started(self) -> None:
        """Hook: block until a just started job's work is up (``submit`` calls it; default: at once).

        For jobs whose work takes a while to become usable (a web server
        binding its port), so that ``submit`` returns when they are.
        """

    async def wait_started_async(self) -> None:
        """Hook: async form of :meth:`wait_started`, awaited by ``submit_async``."""

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Hook: run one call and return its result (default: in the engine's loop).

        Without arguments (upstream's form) it runs the job's own
        ``func(*args, **kwargs)``.
        """
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        result = func(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def start_generator(
        self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict
    ) -> GeneratorDriver:
        """Hook: create the generator where the job runs; return its driver."""
        return GeneratorDriver(func(*args, **kwargs))

    # ------------------------------------------------------- engine plumbing
    def _call_or_own(self, func: T.Optional[T.Callable[..., T.Any]], args: T.Optional[tuple],
                     kwargs: T.Optional[dict]) -> tuple[T.Callable[..., T.Any], tuple, dict]:
        """The call given to ``run_function``, or the job's own when called upstream's way (no arguments)."""
        if func is None:
            return self.func, self.args, self.kwargs
        return func, args if args is not None else (), kwargs if kwargs is not None else {}

    def _require_engine(self, what: str) -> "Engine":
        if self.engine is None:
            raise InvalidStateError(f"{what}(): job {self.id} was never submitted to an engine")
        return self.engine

    def call_options(self) -> CallOptions:
        """The working dir / redirection for this attempt (creates the cache dir if needed)."""
        if not self.change_dir and not self.redirect_out_err:
            return _NO_OPTIONS
        change_dir: T.Optional[str] = None
        if self.change_dir is True:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            change_dir = str(self.cache_dir.resolve())
        elif self.change_dir:
            change_dir = str(self.change_dir)
        out = err = None
        if self.redirect_out_err is True:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            out = str((self.cache_dir / "stdout.txt").resolve())
            err = str((self.cache_dir / "stderr.txt").resolve())
        elif isinstance(self.redirect_out_err, (str, Path)) and str(self.redirect_out_err):
            path = Path(self.redirect_out_err).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            out = err = str(path)
        return CallOptions(change_dir, out, err)

    def _resolved_call(self, engine: "Engine") -> tuple[T.Callable[..., T.Any], tuple, dict]:
        """The function and its arguments with futures replaced and the engine injected."""
        args, kwargs = self.args, self.kwargs
        if self._upstream:
            args = tuple(engine._future_value(a) if isinstance(a, JobFuture) else a for a in args)
            kwargs = {k: engine._future_value(v) if isinstance(v, JobFuture) else v
                      for k, v in kwargs.items()}
        key = engine.setting.kwargs_inject_key
        if key and self.accepts_engine and key in func_traits(self.func).keywords:
            kwargs = dict(kwargs)
            kwargs[key] = engine
        return self.func, args, kwargs

    async def _execute(self, engine: "Engine") -> T.Any:
        """One attempt: returns the result, or a generator proxy for generator functions."""
        if uses_upstream_hooks(type(self)):
            return await run_upstream_attempt(self, engine)
        func, args, kwargs = self._resolved_call(engine)
        options = self.call_options()
        if func_traits(self.func).generator:
            return await self._start_proxy(func, args, kwargs, options)
        if options.trivial:
            return await self.run_function(func, args, kwargs)
        return await self.run_function(OptionsCall(func, options), args, kwargs)

    def _prepare_proxy(self) -> None:
        """For generator functions, create the result proxy now (the job is about to run).

        The proxy exists as soon as the job is ``running``; its first step waits
        until the generator has been created where the job runs.
        """
        if not func_traits(self.func).generator:
            self._proxy = None
            return
        target = self.func
        while hasattr(target, "func") and not inspect.isfunction(target):
            target = target.func
        self._proxy = AsyncGeneratorProxy(self) if inspect.isasyncgenfunction(target) else GeneratorProxy(self)

    async def _start_proxy(
        self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict, options: CallOptions
    ) -> _ProxyBase:
        if self._proxy is None:
            self._prepare_proxy()
        proxy = self._proxy
        assert proxy is not None
        try:
            target = func if options.trivial else OptionsCall(func, options)
            proxy._driver.set_result(await self.start_generator(target, args, kwargs))
        except BaseException as exc:
            proxy._driver.set_exception(exc)
            raise
        return proxy

    def _record_failure(self, exc: BaseException) -> None:
        self._exception = exc
        self._traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


_NO_OPTIONS = CallOptions()
register_job_classes(Job, JobFuture)


class FuncTraits(T.NamedTuple):
    """What the engine needs to know about a job's function (computed once per function)."""

    generator: bool
    """A sync or async generator function (the job's result is a proxy)."""
    coroutine: bool
    """A coroutine function (its call must be awaited)."""
    keywords: frozenset[str]
    """Names it accepts as keyword arguments (for engine injection)."""


def _compute_traits(func: T.Callable[..., T.Any]) -> FuncTraits:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        params = ()  # type: ignore[assignment]
    keywords = frozenset(p.name for p in params if p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    return FuncTraits(is_generator_function(func), inspect.iscoroutinefunction(func), keywords)


_cached_traits = functools.lru_cache(maxsize=1024)(_compute_traits)


def func_traits(func: T.Callable[..., T.Any]) -> FuncTraits:
    """:class:`FuncTraits` of ``func``, cached when it is hashable (signatures are slow to compute)."""
    try:
        return _cached_traits(func)
    except TypeError:  # unhashable callable
        return _compute_traits(func)


def _redirect_target(redirect_out_err: T.Union[bool, str, Path]) -> T.Union[bool, str]:
    """``redirect_out_err`` as stored: True/False, or a file path with ``~`` expanded.

    A path naming a directory is refused here: it could only fail when the job runs.
    """
    if isinstance(redirect_out_err, bool) or not str(redirect_out_err):
        return redirect_out_err if isinstance(redirect_out_err, bool) else False
    path = os.path.expanduser(str(redirect_out_err))
    if os.path.isdir(path):
        raise ValueError(
            f"redirect_out_err {str(redirect_out_err)!r} is a directory: give a file path for stdout and stderr "
            "(or True for stdout.txt/stderr.txt in the job's cache dir)"
        )
    return path
