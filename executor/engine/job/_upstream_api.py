"""The parts of executor-engine 0.3.3's ``Job`` API that our engine does not need itself.

Upstream jobs drive their own life (``emit`` → ``wait_and_run`` → ``run``);
ours are driven by the engine.  :class:`UpstreamJobAPI` gives :class:`Job`
upstream's methods with upstream's names, signatures and coroutine-ness, and
the hooks a custom job type written the upstream way overrides
(``run_function``/``run_generator``, ``process_func``, ``resolve_args``,
``has_resource``/``consume_resource``/``release_resource``,
``clear_context``).  The engine runs a job class that overrides one of those
hooks through them (see :func:`uses_upstream_hooks`); the built-in job types
keep their fast paths.
"""

from __future__ import annotations

import asyncio
import inspect
import typing as T

from ..base import ExecutorObj
from .utils import ACTIVE_STATUSES, InvalidStateError, JobStatusType, OptionsCall

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine
    from .base import Job

__all__ = ["UpstreamJobAPI", "overrides_cancel", "overrides_status_hooks", "uses_upstream_hooks",
           "run_upstream_attempt"]

STATUS_HOOKS = ("on_done", "on_failed")
"""Upstream's per-outcome hooks: an override is awaited with the attempt's result or exception."""
UPSTREAM_HOOKS = ("run", "run_generator", "process_func", "resolve_args", "has_resource",
                  "consume_resource", "release_resource") + STATUS_HOOKS
"""Hooks whose override makes the engine run a job class the upstream way."""

_RESOURCE_HOOKS = ("has_resource", "consume_resource", "release_resource")
_upstream_classes: dict[type, bool] = {}
_job_classes: dict[str, T.Any] = {}
"""``Job`` and ``JobFuture``, registered by :mod:`.base` once defined (importing them here would be a cycle)."""


def register_job_classes(job: type, future: type) -> None:
    """Called by :mod:`.base`: the classes this mixin's upstream hooks check against."""
    _job_classes.update(Job=job, JobFuture=future)


def _own_run_function(cls: type) -> bool:
    """True when ``cls`` overrides ``run_function`` the upstream way (``async def run_function(self)``)."""
    method = cls.run_function  # type: ignore[attr-defined]
    if method is _job_classes["Job"].run_function:
        return False
    try:
        params = list(inspect.signature(method).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params) and not _defined_by_engine(cls, "run_function")


def _defined_by_engine(cls: type, name: str) -> bool:
    """True when the class defining ``name`` for ``cls`` is one of this package's own."""
    owner = next(klass for klass in cls.__mro__ if name in vars(klass))
    return owner.__module__.startswith("executor.engine.")


def uses_upstream_hooks(cls: type) -> bool:
    """True when a job class overrides one of upstream's hooks (it then runs through them)."""
    known = _upstream_classes.get(cls)
    if known is None:
        known = _own_run_function(cls) or _overrides_any(cls, UPSTREAM_HOOKS, {})
        _upstream_classes[cls] = known
    return known


def overrides_status_hooks(cls: type) -> bool:
    """True when a job class written outside the engine overrides ``on_done`` or ``on_failed``."""
    return _overrides_any(cls, STATUS_HOOKS, _status_hook_classes)


def overrides_resource_hooks(cls: type) -> bool:
    """True when a job class written outside the engine overrides a resource hook (asked on every attempt)."""
    return _overrides_any(cls, _RESOURCE_HOOKS, _resource_hook_classes)


def _overrides_any(cls: type, names: T.Iterable[str], known: dict[type, bool]) -> bool:
    """Whether a class outside the engine defines one of ``names`` for ``cls``; remembered in ``known``."""
    answer = known.get(cls)
    if answer is None:
        answer = known[cls] = any(not _defined_by_engine(cls, name) for name in names)
    return answer


_status_hook_classes: dict[type, bool] = {}
_resource_hook_classes: dict[type, bool] = {}


def overrides_cancel(cls: type) -> bool:
    """True when a job class written outside the engine overrides ``cancel`` (the engine then calls it)."""
    return not _defined_by_engine(cls, "cancel")


async def run_upstream_attempt(job: "Job", engine: "Engine") -> T.Any:
    """One attempt the upstream way: resources, ``process_func``, ``resolve_args``, ``run``.

    The job's ``func``/``args``/``kwargs`` hold the prepared call during the
    attempt (upstream's hooks read them there) and get their own values back
    afterwards, so that a rerun starts from what was submitted.
    """
    cls = type(job)
    # the engine's scheduler already gave the job a slot; a job type's own resource hooks are asked on top,
    # re-checked every wait_time_delta (an opaque resource tells nobody when it frees up)
    own_resources = overrides_resource_hooks(cls)
    consumed = False
    saved = (job.func, job.args, job.kwargs)
    try:
        if own_resources:
            while not (job.has_resource() and job.consume_resource()):
                await asyncio.sleep(job.wait_time_delta)
            consumed = True
        job.func, job.args, job.kwargs = job._resolved_call(engine)
        job.process_func()
        await job.resolve_args()
        return await job.run()
    finally:
        job.func, job.args, job.kwargs = saved
        if consumed:
            job.release_resource()


class _CallbackList(list):
    """Several callbacks in one callable (``JobFuture.add_done_callback`` appends to it)."""

    def __call__(self, value: T.Any) -> None:
        for callback in list(self):
            outcome = callback(value)
            if inspect.isawaitable(outcome):
                asyncio.ensure_future(outcome)


def append_callback(current: T.Any, callback: T.Callable[[T.Any], T.Any]) -> _CallbackList:
    """``current`` (None, one callable or a list) with ``callback`` added, as a :class:`_CallbackList`."""
    if isinstance(current, _CallbackList):
        current.append(callback)
        return current
    callbacks = _CallbackList([] if current is None else [current])
    callbacks.append(callback)
    return callbacks


def callback_list(current: T.Any) -> list:
    """The callbacks held by a job's ``callback``/``error_callback`` attribute."""
    if isinstance(current, _CallbackList):
        return current
    return [] if current is None else [current]


class UpstreamJobAPI(ExecutorObj):
    """Upstream's job methods, mixed into :class:`~executor.engine.job.base.Job`."""

    repr_attrs: T.ClassVar[list[tuple[str, T.Callable[[T.Any], T.Any]]]] = [
        ("status", lambda self: self.status),
        ("id", lambda self: self.id),
        ("func", lambda self: _callable_name(self.func)),
        ("condition", lambda self: self.condition),
        ("retry_remain", lambda self: self.retry_remain),
    ]
    """``(label, getter)`` pairs shown by ``repr()`` (falsy values are left out), as upstream."""

    if T.TYPE_CHECKING:  # pragma: no cover
        engine: T.Optional["Engine"]
        func: T.Callable[..., T.Any]
        args: tuple
        kwargs: dict
        retries: int
        attempts: int
        wait_time_delta: float
        _status: JobStatusType
        _task: T.Optional[asyncio.Task]
        _upstream: frozenset[str]
        id: str

        def _require_engine(self, what: str) -> "Engine": ...
        def call_options(self) -> T.Any: ...
        def _resolved_call(self, engine: "Engine") -> tuple: ...
        async def _start_proxy(self, func: T.Any, args: tuple, kwargs: dict, options: T.Any) -> T.Any: ...
        async def run_function(self, func: T.Any = None, args: T.Any = None, kwargs: T.Any = None) -> T.Any: ...

    # ------------------------------------------------------- state, as upstream
    @property
    def retry_remain(self) -> int:
        """How many retries are left for the current run."""
        return max(0, self.retries - max(0, self.attempts - 1)) if self.attempts else self.retries

    @property
    def task(self) -> T.Optional[asyncio.Task]:
        """The asyncio Task of the running attempt, if it runs in one (plain calls take none)."""
        return self._task

    @property
    def dep_job_ids(self) -> list[str]:
        """Ids of the jobs whose futures are among the arguments."""
        JobFuture = _job_classes["JobFuture"]  # noqa: N806
        values = list(self.args) + list(self.kwargs.values())
        return [v.job_id for v in values if isinstance(v, JobFuture)]

    def __repr__(self) -> str:
        shown = []
        for label, getter in self.repr_attrs:
            value = getter(self)
            if value:
                shown.append(f"{label}={value}")
        return f"<{type(self).__name__} {' '.join(shown)}>"

    # ------------------------------------------------- resources (upstream hooks)
    def _resource_fields(self) -> tuple[str, ...]:
        kind = f"n_{getattr(self, 'resource_kind', 'local')}"
        return ("n_job", kind) if kind in ("n_thread", "n_process", "n_dask") else ("n_job",)

    def has_resource(self) -> bool:
        """Hook: whether the engine's resource counters (``engine.resource``) have a slot for this job."""
        engine = self.engine
        return engine is not None and all(getattr(engine.resource, f) > 0 for f in self._resource_fields())

    def consume_resource(self) -> bool:
        """Hook: take a slot from the engine's resource counters; False without an engine."""
        engine = self.engine
        if engine is None:
            return False
        for field in self._resource_fields():
            setattr(engine.resource, field, getattr(engine.resource, field) - 1)
        return True

    def release_resource(self) -> bool:
        """Hook: give the slot back; False without an engine."""
        engine = self.engine
        if engine is None:
            return False
        for field in self._resource_fields():
            setattr(engine.resource, field, getattr(engine.resource, field) + 1)
        return True

    def runnable(self) -> bool:
        """Whether the job could start now: it has an engine, its condition holds and a slot is free."""
        engine = self.engine
        if engine is None:
            return False
        condition = getattr(self, "condition", None)
        if condition is not None and not condition.satisfy(engine):
            return False
        return self.has_resource()

    # ------------------------------------------------------ running (upstream hooks)
    def resolve_dependencies(self) -> None:
        """Find the job futures among the arguments (the engine waits for them; see ``dep_job_ids``)."""

    async def resolve_args(self) -> None:
        """Hook: replace job futures among ``args``/``kwargs`` by their results (the engine did already)."""
        engine = self.engine
        if engine is None or not self.dep_job_ids:
            return
        JobFuture = _job_classes["JobFuture"]  # noqa: N806
        self.args = tuple(engine._future_value(a) if isinstance(a, JobFuture) else a for a in self.args)
        self.kwargs = {k: engine._future_value(v) if isinstance(v, JobFuture) else v
                       for k, v in self.kwargs.items()}

    def process_func(self) -> None:
        """Hook: wrap ``self.func`` for ``redirect_out_err``/``change_dir`` before an attempt runs."""
        options = self.call_options()
        if not options.trivial:
            self.func = OptionsCall(self.func, options)

    async def run(self) -> T.Any:
        """Hook: one attempt (``run_generator`` for generator functions, else ``run_function``)."""
        from .utils import is_generator_function

        if is_generator_function(self.func):
            return await self.run_generator()
        return await self.run_function()

    async def run_generator(self) -> T.Any:
        """Hook: start a generator function; the result is a proxy that steps it."""
        from .utils import CallOptions

        return await self._start_proxy(self.func, self.args, self.kwargs, CallOptions())

    def clear_context(self) -> None:
        """Hook: release what a cancelled running attempt holds (called on cancel; default: nothing)."""

    async def emit(self) -> T.Optional[asyncio.Task]:
        """Hand the job (back) to its engine to run; returns the attempt's Task if it has one."""
        engine = self._require_engine("emit")
        if self._status in ACTIVE_STATUSES:
            raise InvalidStateError(f"job {self.id} is already {self._status}")
        await engine.submit_async(self)  # type: ignore[arg-type]
        return self._task

    async def wait_and_run(self) -> T.Any:
        """Wait until the job finished; return its result if it is done (None otherwise)."""
        engine = self._require_engine("wait_and_run")
        await engine.join([self])  # type: ignore[list-item]
        return self._result if self._status == "done" else None  # type: ignore[attr-defined]

    async def on_done(self, res: T.Any) -> None:
        """Finish the running attempt as ``done`` with result ``res`` (callbacks run)."""
        engine = self._require_engine("on_done")
        engine._finish_attempt(self, "done", res)  # type: ignore[arg-type]

    async def on_failed(self, e: Exception) -> None:
        """Finish the running attempt as failed with ``e`` (retries and error callbacks apply)."""
        engine = self._require_engine("on_failed")
        engine._finish_attempt(self, "failed", e)  # type: ignore[arg-type]

    # -------------------------------------------------------------- waiting
    async def wait_until(self, check_func: T.Callable[[T.Any], bool],
                         timeout: T.Optional[float] = None) -> None:
        """Wait until ``check_func(job)`` is true, re-checking every ``wait_time_delta`` seconds.

        Raises:
            asyncio.TimeoutError: ``timeout`` seconds passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not check_func(self):
            if deadline is not None and loop.time() >= deadline:
                raise asyncio.TimeoutError(f"job {self.id}: condition not reached within {timeout} s")
            await asyncio.sleep(self.wait_time_delta)

    async def wait_until_status(self, status: JobStatusType, timeout: T.Optional[float] = None) -> None:
        """Wait until the job has ``status`` (raises ``asyncio.TimeoutError`` after ``timeout`` s)."""
        await self.wait_until(lambda job: job.status == status, timeout)


def _callable_name(func: T.Any) -> str:
    """The name upstream shows for a job's function (through wrappers that hold ``.func``)."""
    while hasattr(func, "func"):
        func = func.func
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__
