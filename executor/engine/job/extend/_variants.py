"""Job classes that take their backend as an argument (``base_class=``).

``SubprocessJob(cmd, base_class=ThreadJob)`` must be a ThreadJob (same
concurrency limit, same pool) and a SubprocessJob at once. :func:`variant`
builds, once per pair, the class ``(Mixin, Base)`` and registers the standard
ones under importable names so that jobs pickle by reference.

It also holds :class:`CommandRunner`, the mixin that runs a shell command the
way the base class runs things: watched from the event loop (LocalJob), on a
pool thread (ThreadJob), or in a worker process / on a dask worker.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import inspect
import typing as T
from pathlib import Path

from ..base import Job
from ..local import LocalJob
from ..process import ProcessJob
from ..thread import ThreadJob
from ._command import CommandSpec, read_pgid, run_command_async, run_command_blocking
from ._process_group import stop_foreign_group
from ._reaper import guard

__all__ = ["CommandCancelled", "CommandRunner", "STANDARD_BASES", "variant"]

STANDARD_BASES: tuple[type[Job], ...] = (LocalJob, ThreadJob, ProcessJob)
_VARIANTS: dict[tuple[type, type], type] = {}

M = T.TypeVar("M", bound=Job)


def variant(mixin: type[M], base_class: object, allowed: str = "LocalJob, ThreadJob or ProcessJob") -> type[M]:
    """The class combining ``mixin`` with ``base_class`` (built on first use, then reused)."""
    if not (isinstance(base_class, type) and issubclass(base_class, Job)) or issubclass(base_class, mixin):
        raise TypeError(f"base_class must be {allowed} (or a subclass), got {base_class!r}")
    key = (mixin, base_class)
    cls = _VARIANTS.get(key)
    if cls is None:
        qualname = f"{mixin.__name__}_{base_class.__name__}"
        cls = type(mixin.__name__, (mixin, base_class), {
            "__module__": mixin.__module__, "__qualname__": qualname, "__doc__": mixin.__doc__})
        _VARIANTS[key] = cls
        if base_class in STANDARD_BASES:
            # importable by name, so these jobs pickle by reference
            setattr(sys.modules[mixin.__module__], qualname, cls)
    return T.cast(type[M], cls)


class CommandCancelled(Exception):
    """The job was cancelled before (or while) its command started on a pool thread."""


class _ThreadLaunch:
    """One attempt's command on a pool thread: its group id once started, and whether it was cancelled.

    The lock orders "started" against "cancelled": a cancel either sees the
    group id (and stops the group) or is seen by the thread (which stops it).
    """

    __slots__ = ("_lock", "pgid", "cancelled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pgid: T.Optional[int] = None
        self.cancelled = False

    def started(self, pgid: int) -> None:
        """On the thread, right after the start: raising here makes the runner kill the group."""
        with self._lock:
            self.pgid = pgid
            if self.cancelled:
                raise CommandCancelled("the job was cancelled while its command started")

    def cancel(self) -> T.Optional[int]:
        """On the loop: mark the attempt cancelled; the group to stop, if the command started."""
        with self._lock:
            self.cancelled = True
            return self.pgid


def _command_on_pool_thread(spec_for: T.Callable[[T.Optional[str]], CommandSpec], launch: _ThreadLaunch) -> int:
    """The fast-path call: build the spec (paths, directories) here, off the loop, then run the command."""
    if launch.cancelled:  # still queued when it was cancelled: never start it
        raise CommandCancelled("the job was cancelled before its command started")
    return run_command_blocking(spec_for(None), launch.started)


class CommandRunner(Job):
    """Mixin: run a :class:`CommandSpec` where the job's base class runs things.

    Every path stops the command's whole process group when the job is
    cancelled.  On ThreadJob, the engine's fast path runs the command through
    :meth:`command_thread_call` / :meth:`stop_command_thread`.
    """

    def __getstate__(self) -> dict[str, T.Any]:
        state = super().__getstate__()
        state.pop("_launch", None)  # the running attempt's lock: runtime only
        return state

    def command_thread_call(
        self, spec_for: T.Callable[[T.Optional[str]], CommandSpec]
    ) -> tuple[T.Callable[..., T.Any], tuple, dict]:
        """The pool-thread call of a new attempt: builds ``spec_for(None)`` and runs it there."""
        launch = self._launch = _ThreadLaunch()
        return _command_on_pool_thread, (spec_for, launch), {}

    def stop_command_thread(self) -> T.Optional[T.Coroutine[T.Any, T.Any, None]]:
        """The attempt of :meth:`command_thread_call` was cancelled: a coroutine stopping its group, if started."""
        launch: T.Optional[_ThreadLaunch] = getattr(self, "_launch", None)
        if launch is None:
            return None
        pgid = launch.cancel()
        return None if pgid is None else stop_foreign_group(pgid)

    def cache_dir_made(self) -> Path:
        """The job's cache dir, created now because something is about to be written there."""
        path = self.cache_dir.resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output_paths(self) -> tuple[str | None, str | None]:
        """Files for the command's stdout and stderr per ``redirect_out_err`` (None: inherit ours)."""
        if self.redirect_out_err is True:
            folder = self.cache_dir_made()
            return str(folder / "stdout.txt"), str(folder / "stderr.txt")
        if self.redirect_out_err:
            path = Path(self.redirect_out_err).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return str(path), str(path)
        return None, None

    async def run_command(self, spec_for: T.Callable[[T.Optional[str]], CommandSpec]) -> int:
        """Run the command built by ``spec_for(pgid_path)`` and return its return code."""
        if isinstance(self, ThreadJob):
            return await self._command_on_thread(spec_for(None))
        if isinstance(self, ProcessJob) or self.resource_kind == "dask":
            return await self._command_elsewhere(spec_for)
        return await run_command_async(spec_for(None))

    async def _command_on_thread(self, spec: CommandSpec) -> int:
        started: list[int] = []
        try:
            return T.cast(int, await super().run_function(run_command_blocking, (spec, started.append), {}))
        except asyncio.CancelledError:
            # the pool thread cannot be interrupted: stopping its command lets it return
            if started:
                await stop_foreign_group(started[0])
            raise

    async def _command_elsewhere(self, spec_for: T.Callable[[T.Optional[str]], CommandSpec]) -> int:
        # a worker is killed on cancel before it can clean up, so the command's
        # process-group id is published in a file that this side reads
        # in the watchdog's folder: removed with it should this process die before the finally below
        handle, pgid_path = tempfile.mkstemp(prefix="executor-pgid-", dir=guard().scratch_dir())
        os.close(handle)
        try:
            return T.cast(int, await super().run_function(run_command_blocking, (spec_for(pgid_path),), {}))
        except asyncio.CancelledError:
            pgid = read_pgid(pgid_path)
            if pgid is not None:
                await stop_foreign_group(pgid)
            raise
        finally:
            for path in (pgid_path, f"{pgid_path}.tmp"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def signature_of_init(cls: type) -> inspect.Signature:
    """The constructor signature of a class whose ``__new__`` takes ``*args, **kwargs`` (for ``inspect``)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    return inspect.Signature(parameters)
