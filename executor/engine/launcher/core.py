"""Launchers: turn a function into something that submits jobs when called.

``@launcher`` (bare) or ``@launcher(job_type="thread", async_mode=True, ...)``.
A sync launcher's ``submit(*args)`` returns the submitted job and calling it
returns the result; an async launcher does the same with ``await``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import typing as T

from ..job.base import Job
from .default import get_default_engine, is_auto_created, set_default_engine

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


class _JobTypeClasses(T.Mapping[str, type]):
    """``job_type`` name → job class (upstream's ``job_type_classes``), importing extended types on demand."""

    def __getitem__(self, key: str) -> type:
        if key not in JOB_TYPES:
            raise KeyError(key)
        return resolve_job_type(key)

    def __iter__(self) -> T.Iterator[str]:
        return iter(JOB_TYPES)

    def __len__(self) -> int:
        return len(JOB_TYPES)


job_type_classes: T.Mapping[str, type] = _JobTypeClasses()
"""``job_type`` name → job class."""

__all__ = ["launcher", "SyncLauncher", "AsyncLauncher", "LauncherBase", "get_default_engine",
           "set_default_engine", "job_type_classes", "resolve_job_type", "JOB_TYPES"]


def is_cmd2func(obj: object) -> bool:
    """True for a ``cmd2func`` wrapper (it builds a command line from the call's arguments)."""
    # a cmd2func made from a function has no __signature__: its get_cmd_str is what counts
    return callable(getattr(obj, "get_cmd_str", None))


class LauncherBase:
    """Shared parts of :class:`SyncLauncher` and :class:`AsyncLauncher`.

    Args (upstream's, in its order):
        target_func: the function or ``cmd2func`` object.
        engine: the engine jobs go to (default: :func:`get_default_engine` at call time).
        job_type: a job type name or a Job subclass.  A ``cmd2func`` object
            makes SubprocessJobs (WebappJobs with ``"webapp"``), so the
            launcher reports ``job_type="subprocess"`` as upstream; a
            ``job_type`` of ``"local"``, ``"thread"``, ``"dask"`` or a Job class
            becomes the command job's ``base_class``.
        name: the launcher's name, also the name of its jobs (default: the function's).
        description: a description (default: the function's docstring).
        tags: labels of the launcher.
        job_attrs: keyword arguments for every job (``retries``, ``condition``, ...).
        **job_kwargs: more job keyword arguments (merged over ``job_attrs``).
    """

    def __init__(self, target_func: T.Callable[..., T.Any], engine: T.Optional["Engine"] = None,
                 job_type: T.Union[str, type] = "process", name: T.Optional[str] = None,
                 description: T.Optional[str] = None, tags: T.Optional[T.List[str]] = None,
                 job_attrs: T.Optional[dict] = None, **job_kwargs: T.Any) -> None:
        func = target_func
        if not callable(func):
            raise TypeError(f"launcher needs a callable, got {type(func).__name__}: {func!r}")
        if job_attrs is not None and not isinstance(job_attrs, dict):
            raise TypeError(f"job_attrs must be a dict of job keyword arguments, got {job_attrs!r}")
        self.func = func
        self.name: str = str(name or getattr(func, "__name__", None) or type(func).__name__)
        self.description: T.Optional[str] = description or getattr(func, "__doc__", None)
        self.tags: T.List[str] = list(tags or [])
        job_kwargs = {**(job_attrs or {}), **job_kwargs}
        self.job_type = job_type
        self._backend = job_type
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
        functools.update_wrapper(self, func)
        _check_job_kwargs(self._made_class(), job_kwargs)
        runs_commands = self.is_cmd or job_type == "subprocess"
        if "base_class" in job_kwargs and runs_commands and job_type in ("local", "thread", "process", "dask"):
            raise TypeError(
                f"launcher got base_class= and job_type={job_type!r}: for commands job_type is the base class; "
                "give one of them (job_type='subprocess' with base_class=..., or job_type alone)"
            )
        if self.is_cmd and job_type != "webapp":
            self.job_type = "subprocess"  # what upstream reports for cmd2func objects

    @property
    def target_func(self) -> T.Callable[..., T.Any]:
        """The launched function (upstream's name for :attr:`func`)."""
        return self.func

    @property
    def job_attrs(self) -> dict:
        """Keyword arguments given to every job, ``name`` included (as upstream)."""
        return {"name": self.name, **self.job_kwargs}

    @property
    def desc(self) -> T.Optional[inspect.Signature]:
        """The launched function's signature (upstream: a ``funcdesc`` description)."""
        try:
            return inspect.signature(self.func)
        except (TypeError, ValueError):
            return None

    @property
    def async_mode(self) -> bool:
        """True for an :class:`AsyncLauncher`."""
        return False

    def __call__(self, *args: T.Any, **kwargs: T.Any) -> T.Any:
        """Submit one job and return its result (see the subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def _made_class(self) -> type[Job]:
        """The class of the jobs this launcher makes (a command's job class for cmd2func objects)."""
        backend = self._backend
        if not (self.is_cmd or backend == "subprocess"):
            return self.job_class or resolve_job_type(backend)
        subprocess_job, webapp_job = resolve_job_type("subprocess"), resolve_job_type("webapp")
        if backend == "webapp":
            return webapp_job
        if isinstance(backend, type) and issubclass(backend, (subprocess_job, webapp_job)):
            return backend
        return subprocess_job

    @property
    def engine(self) -> "Engine":
        """The engine jobs go to (the default engine unless one was given)."""
        return self._engine if self._engine is not None else get_default_engine()

    @engine.setter
    def engine(self, engine: "Engine") -> None:
        _check_engine(engine)
        self._engine = engine

    def create_job(self, args: tuple, kwargs: dict, **attrs: T.Any) -> Job:
        """Build the job for one call (``attrs``: more job keyword arguments for this one)."""
        options = {"name": self.name, **self.job_kwargs, **attrs}
        if self.is_cmd or self._backend == "subprocess":
            cmd = self.func.get_cmd_str(*args, **kwargs) if self.is_cmd else self.func(*args, **kwargs)  # type: ignore[attr-defined]
            if not isinstance(cmd, str):
                cmd = next(iter(cmd), None) if hasattr(cmd, "__iter__") else cmd  # a generator of commands
            if not isinstance(cmd, str):
                raise TypeError(f"{self.__name__} must produce a command string, got {cmd!r}")  # type: ignore[attr-defined]
            return self._command_job(cmd, options)
        job_class = self.job_class or resolve_job_type(self._backend)
        return job_class(self.func, args=args, kwargs=kwargs, **options)

    def _command_job(self, cmd: str, options: dict[str, T.Any]) -> Job:
        """The job running a command line built from a call: on ``job_type``'s backend, or served as a web app."""
        # webapp: the command is the template, the job fills in {ip} and {port}
        job_class: T.Any = self._made_class()
        extra: dict[str, T.Any] = {}
        backend = self._backend
        if job_class is resolve_job_type("subprocess") and backend not in ("subprocess", "process", job_class):
            extra["base_class"] = resolve_job_type(backend)  # run the command on that backend
        return T.cast(Job, job_class(cmd, **extra, **options))

    def __repr__(self) -> str:
        mode = "async" if isinstance(self, AsyncLauncher) else "sync"
        return f"<{mode} launcher {getattr(self.func, '__name__', self.func)!r} job_type={self.job_type!r}>"


def _check_engine(engine: object) -> None:
    from ..core import Engine

    if engine is not None and not isinstance(engine, Engine):
        raise TypeError(f"engine must be an Engine (or None for the default engine), got {engine!r}")


def _accepted_keywords(job_class: type[Job]) -> T.Optional[set[str]]:
    """Keyword arguments ``job_class(...)`` accepts, following ``**kwargs`` up the MRO (None: any).

    ``Job``'s own ``**attrs`` (extra job attributes, as upstream) does not count as "any".
    """
    names: set[str] = set()
    for klass in job_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names.update(p.name for p in parameters
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        if klass is Job or not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return names - {"self"}
    return None


def _other_job_options(job_class: type[Job]) -> set[str]:
    """Options of the other built-in job types (given to ``job_class``, they are a mistake, not an attribute)."""
    names: set[str] = set()
    for job_type in JOB_TYPES:
        try:
            other = resolve_job_type(job_type)
        except ImportError:  # dask not installed
            continue
        if not issubclass(job_class, other):
            names |= _accepted_keywords(other) or set()
    return names


def _check_job_kwargs(job_class: type[Job], job_kwargs: dict[str, T.Any]) -> None:
    """Refuse job options the launcher's jobs would not take, when the launcher is made rather than called."""
    accepted = _accepted_keywords(job_class)
    if accepted is None:
        return
    # what each call supplies is not an option of the launcher
    accepted -= {"func", "args", "kwargs", "cmd", "func_or_template"}
    unknown = sorted(set(job_kwargs) - accepted)
    # Job takes any other keyword as an attribute (job.attrs), as upstream; refuse only likely mistakes
    others = _other_job_options(job_class) - accepted
    unknown = [k for k in unknown if k in others or difflib.get_close_matches(k, accepted, n=1, cutoff=0.7)]
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
        return AsyncLauncher(self.func, self._engine, self._backend, self.name, self.description, self.tags,
                             dict(self.job_kwargs))


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

    @property
    def async_mode(self) -> bool:
        """True for an :class:`AsyncLauncher`."""
        return True

    def to_sync(self) -> SyncLauncher:
        """The sync launcher of the same function and options."""
        return SyncLauncher(self.func, self._engine, self._backend, self.name, self.description, self.tags,
                            dict(self.job_kwargs))


def launcher(func: T.Optional[T.Callable[..., T.Any]] = None, engine: T.Optional["Engine"] = None,
             async_mode: bool = False, job_type: T.Union[str, type] = "process", name: T.Optional[str] = None,
             description: T.Optional[str] = None, tags: T.Optional[T.List[str]] = None,
             job_attrs: T.Optional[dict] = None, **job_kwargs: T.Any) -> T.Any:
    """Decorate a function (or a ``cmd2func`` object) into a launcher.

    Args:
        func: the function; omit it to get a decorator (``@launcher(...)``).
        engine: the engine jobs go to (default: :func:`get_default_engine` at call time).
        job_type: ``"local"``, ``"thread"``, ``"process"``, ``"subprocess"``,
            ``"webapp"``, ``"dask"`` or a Job subclass.  ``cmd2func`` objects
            always make SubprocessJobs (run on ``job_type``'s backend).
        async_mode: make an :class:`AsyncLauncher` (``await``-able) instead.
        name, description, tags: of the launcher (``name`` also names its jobs).
        job_attrs: keyword arguments for every job, as a dict (upstream's form).
        **job_kwargs: passed to every job (``retries``, ``name``, ``condition``, ...).
    """
    if not isinstance(async_mode, bool):
        raise TypeError(f"async_mode must be True or False, got {async_mode!r}")

    def decorate(f: T.Callable[..., T.Any]) -> T.Union[SyncLauncher, AsyncLauncher]:
        cls = AsyncLauncher if async_mode else SyncLauncher
        return cls(f, engine, job_type, name, description, tags, job_attrs, **job_kwargs)

    if func is None:
        return decorate
    if not callable(func):
        raise TypeError(f"launcher needs a callable, got {type(func).__name__}: {func!r}")
    return decorate(func)


