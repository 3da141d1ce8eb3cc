"""Launchers: turn a function into something that submits jobs when called.

``@launcher`` (bare) or ``@launcher(job_type="thread", async_mode=True, ...)``.
A sync launcher's ``submit(*args)`` returns the submitted job and calling it
returns the result; an async launcher does the same with ``await``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing as T

from ..job.base import Job
from .default import get_default_engine, is_auto_created

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

JOB_TYPES = ("local", "thread", "process", "subprocess", "webapp", "dask")


def resolve_job_type(job_type: T.Union[str, type]) -> type[Job]:
    """The job class for a ``job_type`` name (extended types are imported on demand)."""
    if isinstance(job_type, type) and issubclass(job_type, Job):
        return job_type
    if job_type == "local":
        from ..job.local import LocalJob
        return LocalJob
    if job_type == "thread":
        from ..job.thread import ThreadJob
        return ThreadJob
    if job_type == "process":
        from ..job.process import ProcessJob
        return ProcessJob
    # extended job types live in modules of their own, imported only when asked for
    extended = {"subprocess": ("executor.engine.job.extend", "SubprocessJob"),
                "webapp": ("executor.engine.job.extend", "WebappJob"),
                "dask": ("executor.engine.job.dask", "DaskJob")}
    if isinstance(job_type, str) and job_type in extended:
        module, name = extended[job_type]
        return T.cast(type[Job], getattr(importlib.import_module(module), name))
    raise ValueError(f"job_type must be one of {list(JOB_TYPES)} or a Job subclass, got {job_type!r}")


def is_cmd2func(obj: object) -> bool:
    """True for a ``cmd2func`` wrapper (it builds a command line from the call's arguments)."""
    # a cmd2func made from a function has no __signature__: its get_cmd_str is what counts
    return callable(getattr(obj, "get_cmd_str", None))


class LauncherBase:
    """Shared parts of :class:`SyncLauncher` and :class:`AsyncLauncher`."""

    def __init__(self, func: T.Callable[..., T.Any], engine: T.Optional["Engine"] = None,
                 job_type: T.Union[str, type] = "process", **job_kwargs: T.Any) -> None:
        if not callable(func):
            raise TypeError(f"launcher needs a callable, got {type(func).__name__}: {func!r}")
        self.func = func
        self.job_type = job_type
        self.job_kwargs = job_kwargs
        self._engine = engine
        self.is_cmd = is_cmd2func(func)
        if job_type not in JOB_TYPES and not (isinstance(job_type, type) and issubclass(job_type, Job)):
            raise ValueError(f"job_type must be one of {list(JOB_TYPES)} or a Job subclass, got {job_type!r}")
        _check_engine(engine)
        if job_type in ("local", "thread", "process") or isinstance(job_type, type):
            self.job_class: T.Optional[type[Job]] = resolve_job_type(job_type)
        else:
            self.job_class = None  # resolved on first submit (extended job types)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]
        _check_job_kwargs(self._made_class(), job_kwargs)
        runs_commands = self.is_cmd or job_type == "subprocess"
        if "base_class" in job_kwargs and runs_commands and job_type in ("local", "thread", "process", "dask"):
            raise TypeError(
                f"launcher got base_class= and job_type={job_type!r}: for commands job_type is the base class; "
                "give one of them (job_type='subprocess' with base_class=..., or job_type alone)"
            )

    def _made_class(self) -> type[Job]:
        """The class of the jobs this launcher makes (a command's job class for cmd2func objects)."""
        if not (self.is_cmd or self.job_type == "subprocess"):
            return self.job_class or resolve_job_type(self.job_type)
        subprocess_job, webapp_job = resolve_job_type("subprocess"), resolve_job_type("webapp")
        if self.job_type == "webapp":
            return webapp_job
        if isinstance(self.job_type, type) and issubclass(self.job_type, (subprocess_job, webapp_job)):
            return self.job_type
        return subprocess_job

    @property
    def engine(self) -> "Engine":
        """The engine jobs go to (the default engine unless one was given)."""
        return self._engine if self._engine is not None else get_default_engine()

    @engine.setter
    def engine(self, engine: "Engine") -> None:
        _check_engine(engine)
        self._engine = engine

    def create_job(self, args: tuple, kwargs: dict) -> Job:
        """Build the job for one call."""
        if self.is_cmd or self.job_type == "subprocess":
            cmd = self.func.get_cmd_str(*args, **kwargs) if self.is_cmd else self.func(*args, **kwargs)  # type: ignore[attr-defined]
            if not isinstance(cmd, str):
                raise TypeError(f"{self.__name__} must produce a command string, got {cmd!r}")  # type: ignore[attr-defined]
            return self._command_job(cmd)
        job_class = self.job_class or resolve_job_type(self.job_type)
        return job_class(self.func, args=args, kwargs=kwargs, **self.job_kwargs)

    def _command_job(self, cmd: str) -> Job:
        """The job running a command line built from a call: on ``job_type``'s backend, or served as a web app."""
        # webapp: the command is the template, the job fills in {ip} and {port}
        job_class: T.Any = self._made_class()
        extra: dict[str, T.Any] = {}
        if job_class is resolve_job_type("subprocess") and self.job_type not in ("subprocess", job_class):
            extra["base_class"] = resolve_job_type(self.job_type)  # run the command on that backend
        return T.cast(Job, job_class(cmd, **extra, **self.job_kwargs))

    def __repr__(self) -> str:
        mode = "async" if isinstance(self, AsyncLauncher) else "sync"
        return f"<{mode} launcher {getattr(self.func, '__name__', self.func)!r} job_type={self.job_type!r}>"


def _check_engine(engine: object) -> None:
    from ..core import Engine

    if engine is not None and not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine (or None for the default engine), got {engine!r}")


def _accepted_keywords(job_class: type[Job]) -> T.Optional[set[str]]:
    """Keyword arguments ``job_class(...)`` accepts, following ``**kwargs`` up the MRO (None: any)."""
    names: set[str] = set()
    for klass in job_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names.update(p.name for p in parameters
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return names - {"self"}
    return None


def _check_job_kwargs(job_class: type[Job], job_kwargs: dict[str, T.Any]) -> None:
    """Refuse job options the launcher's jobs would not take, when the launcher is made rather than called."""
    accepted = _accepted_keywords(job_class)
    if accepted is None:
        return
    # what each call supplies is not an option of the launcher
    accepted -= {"func", "args", "kwargs", "cmd", "func_or_template"}
    unknown = sorted(set(job_kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"launcher got unknown job option(s) {unknown} for {job_class.__name__}; "
            f"valid ones: {', '.join(sorted(accepted))}"
        )


class SyncLauncher(LauncherBase):
    """``launcher.submit(*args)`` → job; ``launcher(*args)`` → result (blocking)."""

    def submit(self, *args: T.Any, **kwargs: T.Any) -> Job:
        """Submit one job for this call and return it (it is already running if it can)."""
        engine = self.engine
        if is_auto_created(engine) and not engine.is_running:
            engine.start()
        job = self.create_job(args, kwargs)
        engine.submit(job)
        return job

    def __call__(self, *args: T.Any, **kwargs: T.Any) -> T.Any:
        job = self.submit(*args, **kwargs)
        self.engine.wait_job(job)
        if job.status == "failed" and job.exception() is not None:
            raise T.cast(BaseException, job.exception())
        return job.result()

    def to_async(self) -> "AsyncLauncher":
        """The async launcher of the same function and options."""
        return AsyncLauncher(self.func, self._engine, self.job_type, **self.job_kwargs)


class AsyncLauncher(LauncherBase):
    """``await launcher.submit(*args)`` → job; ``await launcher(*args)`` → result."""

    async def submit(self, *args: T.Any, **kwargs: T.Any) -> Job:
        """Submit one job for this call and return it."""
        job = self.create_job(args, kwargs)
        await self.engine.submit_async(job)
        return job

    async def __call__(self, *args: T.Any, **kwargs: T.Any) -> T.Any:
        job = await self.submit(*args, **kwargs)
        await job.join()
        if job.status == "failed" and job.exception() is not None:
            raise T.cast(BaseException, job.exception())
        return job.result()

    def to_sync(self) -> SyncLauncher:
        """The sync launcher of the same function and options."""
        return SyncLauncher(self.func, self._engine, self.job_type, **self.job_kwargs)


@T.overload
def launcher(func: T.Callable[..., T.Any], *, engine: T.Optional["Engine"] = ...,
             job_type: T.Union[str, type] = ..., async_mode: bool = ...,
             **job_kwargs: T.Any) -> T.Union[SyncLauncher, AsyncLauncher]: ...


@T.overload
def launcher(func: None = ..., *, engine: T.Optional["Engine"] = ...,
             job_type: T.Union[str, type] = ..., async_mode: bool = ...,
             **job_kwargs: T.Any) -> T.Callable[[T.Callable[..., T.Any]], T.Union[SyncLauncher, AsyncLauncher]]: ...


def launcher(func: T.Optional[T.Callable[..., T.Any]] = None, *, engine: T.Optional["Engine"] = None,
             job_type: T.Union[str, type] = "process", async_mode: bool = False,
             **job_kwargs: T.Any) -> T.Any:
    """Decorate a function (or a ``cmd2func`` object) into a launcher.

    Args:
        func: the function; omit it to get a decorator (``@launcher(...)``).
        engine: the engine jobs go to (default: :func:`get_default_engine` at call time).
        job_type: ``"local"``, ``"thread"``, ``"process"``, ``"subprocess"``,
            ``"webapp"``, ``"dask"`` or a Job subclass.  ``cmd2func`` objects
            always make SubprocessJobs (run on ``job_type``'s backend).
        async_mode: make an :class:`AsyncLauncher` (``await``-able) instead.
        **job_kwargs: passed to every job (``retries``, ``name``, ``condition``, ...).
    """
    if not isinstance(async_mode, bool):
        raise TypeError(f"async_mode must be True or False, got {async_mode!r}")

    def decorate(f: T.Callable[..., T.Any]) -> T.Union[SyncLauncher, AsyncLauncher]:
        cls = AsyncLauncher if async_mode else SyncLauncher
        return cls(f, engine, job_type, **job_kwargs)

    if func is None:
        return decorate
    if not callable(func):
        raise TypeError(f"launcher needs a callable, got {type(func).__name__}: {func!r}")
    return decorate(func)


