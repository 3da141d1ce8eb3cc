"""Small shared pieces of the job layer: statuses, errors, call options, generator stepping.

This module is imported inside worker processes, so it must stay light (stdlib only).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import tempfile
import traceback
import typing as T
from pathlib import Path
from dataclasses import dataclass

from ..utils import CheckAttrRange, ExecutorError

JobStatusType = T.Literal["created", "pending", "running", "done", "failed", "cancelled"]
"""The six statuses of a job (plain strings)."""

JOB_STATUSES: tuple[JobStatusType, ...] = ("created", "pending", "running", "done", "failed", "cancelled")
ACTIVE_STATUSES: tuple[JobStatusType, ...] = ("pending", "running")
FINISHED_STATUSES: tuple[JobStatusType, ...] = ("done", "failed", "cancelled")


valid_job_statuses: T.List[JobStatusType] = ["pending", "running", "failed", "done", "cancelled"]
"""The statuses of a submitted job (upstream's list)."""


class InvalidStateError(ExecutorError, RuntimeError):
    """An operation needs the job in another status (e.g. ``result()`` before ``done``).

    Raised as ``InvalidStateError(message)`` or, as upstream,
    ``InvalidStateError(job, valid_status)``; ``valid_status`` lists the
    statuses that would have been fine (None when not given).
    """

    def __init__(self, job: T.Any, valid_status: T.Optional[T.List[JobStatusType]] = None) -> None:
        self.valid_status = valid_status
        if isinstance(job, str):
            message = job
        else:
            message = (f"job {getattr(job, 'name', '')} ({getattr(job, 'id', job)}) is "
                       f"{getattr(job, 'status', '?')}, but should be one of {valid_status}")
        super().__init__(message)


class JobStatusAttr(CheckAttrRange):
    """Upstream's status descriptor (kept for code that subclasses it); our jobs keep ``status`` read-only."""

    valid_range: T.Iterable[JobStatusType] = valid_job_statuses
    attr = "_status"


class JobEmitError(ExecutorError, RuntimeError):
    """The engine cannot accept a job (already pending/running, unknown dependency, ...)."""


class _WorkerFailure(Exception):
    """Details of the worker process a job ran on, shared by the crash and timeout errors.

    ``exitcode`` is the worker's exit status (negative: killed by a signal, as
    in :mod:`subprocess`; None when unknown), ``signal`` the signal's name
    (``"SIGSEGV"``) or None, ``output`` the worker's captured output (empty
    unless captured), ``worker_pid``/``worker_id`` which worker it was.
    """

    def __init__(self, message: str, exitcode: int | None = None, signal: str | None = None,
                 output: str = "", worker_pid: int | None = None, worker_id: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal
        self.output = output
        self.worker_pid = worker_pid
        self.worker_id = worker_id

    def __reduce__(self) -> T.Any:
        return (type(self), (str(self), self.exitcode, self.signal, self.output, self.worker_pid, self.worker_id))


class WorkerCrashedError(_WorkerFailure, RuntimeError):
    """The worker process running a job died before sending a result (details: :class:`_WorkerFailure`)."""


class JobTimeoutError(ExecutorError, TimeoutError):
    """An attempt of a job ran longer than the job's ``timeout``; the attempt failed (``retries`` apply)."""

    @classmethod
    def for_job(cls, job: T.Any) -> "JobTimeoutError":
        """The error of ``job``'s current attempt, naming the job, its timeout and the attempt."""
        return cls(f"job {job.name} ({job.id}) ran longer than its timeout of {job.timeout} s "
                   f"(attempt {job.attempts} of {job.retries + 1})")




class WorkerTimeoutError(_WorkerFailure, JobTimeoutError):
    """A process job's attempt ran past its timeout: its worker was stopped with SIGABRT (a stack dump) and killed.

    A :class:`JobTimeoutError` with the worker's details (see :class:`_WorkerFailure`);
    ``output`` holds the stack dump.
    """


class WorkerStateError(RuntimeError):
    """The setup (or host) of a worker state failed; the worker's traceback is the ``__cause__``."""


def check_timeout(timeout: object) -> T.Optional[float]:
    """``timeout`` as a float of seconds > 0 (or None); a clear error for anything else."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    value = float(timeout)
    if not (0 < value < float("inf")):  # also refuses NaN
        raise ValueError(f"timeout must be a finite number of seconds > 0 or None, got {timeout!r}")
    return value


@dataclass(frozen=True)
class CallOptions:
    """Per-call environment applied around a job's function wherever it runs."""

    change_dir: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    @property
    def trivial(self) -> bool:
        """True when the options change nothing (the function can be called directly)."""
        return self.change_dir is None and self.stdout_path is None and self.stderr_path is None


@contextlib.contextmanager
def applied_options(options: CallOptions) -> T.Iterator[None]:
    """Apply ``options`` (working directory, stdout/stderr redirection) for the duration."""
    with contextlib.ExitStack() as stack:
        if options.change_dir is not None:
            old = os.getcwd()
            os.chdir(options.change_dir)
            stack.callback(os.chdir, old)
        if options.stdout_path is not None:
            out = stack.enter_context(open(options.stdout_path, "a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(out))
            if options.stderr_path == options.stdout_path:
                stack.enter_context(contextlib.redirect_stderr(out))
        if options.stderr_path is not None and options.stderr_path != options.stdout_path:
            err = stack.enter_context(open(options.stderr_path, "a", buffering=1))
            stack.enter_context(contextlib.redirect_stderr(err))
        yield


class OptionsCall:
    """A picklable callable applying :class:`CallOptions` around ``func`` wherever it runs."""

    def __init__(self, func: T.Callable[..., T.Any], options: CallOptions) -> None:
        self.func = func
        self.options = options

    def __call__(self, *args: T.Any, **kwargs: T.Any) -> T.Any:
        with applied_options(self.options):
            try:
                return self.func(*args, **kwargs)
            except Exception:
                if self.options.stderr_path is not None:  # the traceback goes to the job's stderr file, as upstream
                    traceback.print_exc()
                raise


def call_sync(func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> T.Any:
    """Call ``func`` in a thread or process without a running loop; run coroutines to completion."""
    result = func(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result


class GeneratorStepper:
    """Drives a sync or async generator one step at a time from synchronous code.

    Async generators get a private event loop so they can be stepped from any
    thread (a worker thread or a worker process) without a running loop.
    """

    def __init__(self, gen: T.Any) -> None:
        self.gen = gen
        self.is_async = inspect.isasyncgen(gen)
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop() if self.is_async else None

    def step(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Advance the generator: ``op`` is "next", "send" or "close".

        Returns ``("yield", value)`` or ``("return", value)``; exceptions raised
        by the generator propagate.
        """
        try:
            if self.is_async:
                assert self._loop is not None
                if op == "close":
                    self._loop.run_until_complete(self.gen.aclose())
                    return ("return", None)
                coro = self.gen.asend(value) if op == "send" else self.gen.__anext__()
                return ("yield", self._loop.run_until_complete(coro))
            if op == "close":
                self.gen.close()
                return ("return", None)
            return ("yield", self.gen.send(value) if op == "send" else next(self.gen))
        except StopIteration as stop:
            self._close_loop()
            return ("return", stop.value)
        except StopAsyncIteration:
            self._close_loop()
            return ("return", None)
        except BaseException:
            self._close_loop()
            raise

    def _close_loop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()


def is_generator_function(func: T.Any) -> bool:
    """True for sync or async generator functions (also through ``functools.partial``)."""
    while hasattr(func, "func") and not inspect.isfunction(func):
        func = func.func
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


def flush_std_streams() -> None:
    """Flush stdout/stderr so output written by a job reaches the parent promptly."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def default_cache_root() -> Path:
    """Where job cache dirs go when no ``cache_path`` is configured.

    A per-user directory under the system's temporary directory
    (``executor-engine-<uid>``): nothing lands in the working directory unless
    the user asks for it with ``cache_path``.  The directory is private: it is
    created 0700, a mode that lets others in is narrowed to 0700, and if it is
    not a real directory owned by this user (another user may have created it
    first, to read or redirect our job store and command files), this process
    uses a fresh private directory instead (removed at exit) and logs why.
    """
    user = os.getuid() if hasattr(os, "getuid") else os.getpid()
    root = Path(tempfile.gettempdir()) / f"executor-engine-{user}"
    if _fallback_root is not None and _fallback_root[0] == os.getpid():
        return _fallback_root[1]
    problem = _make_private(root)
    if problem is None:
        return root
    return _use_fallback_root(root, problem)


_fallback_root: tuple[int, Path] | None = None
"""The private directory this process (pid) uses because the shared default was refused."""


def _make_private(root: Path) -> str | None:
    """Create ``root`` 0700 or check an existing one; the reason it cannot be used, else ``None``."""
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        return f"it cannot be created ({error})"
    if not hasattr(os, "getuid"):
        return None
    try:
        info = os.lstat(root)
    except OSError as error:
        return f"it cannot be read ({error})"
    import stat

    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.getuid():
        return f"it is owned by uid {info.st_uid}, not by this user ({os.getuid()})"
    if info.st_mode & 0o077:
        try:
            os.chmod(root, 0o700)
        except OSError as error:
            return f"its mode {stat.S_IMODE(info.st_mode):o} lets other users in and cannot be fixed ({error})"
    return None


def _use_fallback_root(root: Path, problem: str) -> Path:
    global _fallback_root
    import atexit
    import shutil

    fallback = Path(tempfile.mkdtemp(prefix=f"{root.name}-"))
    _fallback_root = (os.getpid(), fallback)
    atexit.register(shutil.rmtree, fallback, True)
    from ..log import logger

    logger.warning(f"not using the cache dir {root}: {problem}; using the private dir {fallback} instead")
    return fallback
