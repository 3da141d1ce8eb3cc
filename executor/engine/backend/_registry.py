"""The engine's backends by resource kind: one table, so that the engine knows kinds, not classes.

A job type names the pool it runs on with its ``resource_kind``; the pools
themselves (the thread pool, the warm process pool, the dask client) are
opened on first use through this table and closed by ``engine.stop()``.  As in
anyio's ``_backends``, each entry is looked up by name and its module imported
only when that kind is first used: a program that never runs a ProcessJob never
imports the process pool.  Kinds without an entry (``local``, ``caller``, a
job type's own kinds) need no backend.

Each :class:`BackendKind` says how to open the backend for an engine, how to
close it from the loop (``close``, awaited by an orderly stop) or at once
(``close_now``), and optionally what to do before the engine's loop thread
starts (``before_start``: the process pool forks its zygote while the program
is still single-threaded) and after everything is closed (``after_close``).
"""

from __future__ import annotations

import asyncio
import sys
import typing as T

from ..log import logger

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

__all__ = ["BackendKind", "KINDS", "open_backend", "close_backends", "close_backends_now", "before_start"]

_PROCESS_JOB_MODULE = "executor.engine.job.process"
"""Loaded once the program imported ProcessJob: a sign that ProcessJobs will run (see ``fork_zygote``)."""
_DASK_CLOSE_TIMEOUT = 30.0


class BackendKind(T.NamedTuple):
    """How the engine opens and closes the backend of one resource kind."""

    open: T.Callable[["Engine"], T.Any]
    close: T.Callable[[T.Any], T.Awaitable[None]]
    close_now: T.Callable[[T.Any, T.Optional[asyncio.AbstractEventLoop]], None]
    before_start: T.Optional[T.Callable[["Engine"], None]] = None
    after_close: T.Optional[T.Callable[["Engine"], None]] = None


def _shutdown_now(backend: T.Any, _loop: T.Optional[asyncio.AbstractEventLoop]) -> None:
    backend.shutdown()


async def _shutdown(backend: T.Any) -> None:
    backend.shutdown()


def _open_thread(engine: "Engine") -> T.Any:
    from .thread import ThreadBackend

    return ThreadBackend(engine.setting.limit_for("thread") or 32, engine.loop, engine._after_thread_batch)


def _open_process(engine: "Engine") -> T.Any:
    from .process import ProcessPool

    assert engine.loop is not None, "the process pool needs the engine loop"
    if engine._thread is None:  # async use: no start(); the caller's thread may be the only one
        _fork_spare_zygote(engine)
    spare, engine._spare_zygote = engine._spare_zygote, None
    return ProcessPool(engine.setting.limit_for("process") or 32, engine.loop, spare)


def _fork_spare_zygote(engine: "Engine") -> None:
    """Fork the process pool's zygote now if that is safe (see :func:`~.process.can_fork_zygote`).

    A forked zygote costs about a millisecond here; starting one later from
    the loop thread (where forking is unsafe) means an interpreter start plus
    imports, tens of milliseconds on the first ProcessJob.
    """
    wanted = engine.setting.fork_zygote
    if wanted is None:
        wanted = engine.setting.max_process_jobs is not None or _PROCESS_JOB_MODULE in sys.modules
    if not wanted or engine._spare_zygote is not None:
        return
    from .process import can_fork_zygote, fork_zygote

    if can_fork_zygote():
        engine._spare_zygote = fork_zygote()


def _close_spare_zygote(engine: "Engine") -> None:
    if engine._spare_zygote is not None:
        spare, engine._spare_zygote = engine._spare_zygote, None
        spare.close()


def _open_dask(engine: "Engine") -> T.Any:
    from .dask import DaskBackend

    return DaskBackend()


async def _close_dask(backend: T.Any) -> None:
    try:
        await asyncio.wait_for(backend.close(), _DASK_CLOSE_TIMEOUT)
    except Exception as exc:  # a stuck cluster must not block stop()
        logger.warning(f"closing the dask backend failed: {exc!r}")


def _close_dask_now(backend: T.Any, loop: T.Optional[asyncio.AbstractEventLoop]) -> None:
    """Close without awaiting (a sync stop on a loop that keeps running); nothing to do without a loop."""
    if loop is not None and not loop.is_closed() and loop.is_running():
        from .dask import close_soon

        close_soon(backend, loop)


KINDS: dict[str, BackendKind] = {
    "thread": BackendKind(_open_thread, _shutdown, _shutdown_now),
    "process": BackendKind(_open_process, _shutdown, _shutdown_now, _fork_spare_zygote, _close_spare_zygote),
    "dask": BackendKind(_open_dask, _close_dask, _close_dask_now),
}
"""Each resource kind that has a backend, and how to open and close it."""


def open_backend(engine: "Engine", kind: str) -> T.Any:
    """The engine's backend of ``kind``, opened now if it is not open yet."""
    backend = engine._backends.get(kind)
    if backend is None:
        entry = KINDS.get(kind)
        if entry is None:
            raise LookupError(f"no backend for resource kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        backend = engine._backends[kind] = entry.open(engine)
    return backend


def before_start(engine: "Engine") -> None:
    """Run the kinds' ``before_start`` hooks (while the engine's loop thread does not exist yet)."""
    for entry in KINDS.values():
        if entry.before_start is not None:
            entry.before_start(engine)


async def close_backends(engine: "Engine") -> None:
    """Close the open backends from the loop, awaiting each (an orderly stop)."""
    for kind in list(engine._backends):
        backend = engine._backends.pop(kind)
        await KINDS[kind].close(backend)


def close_backends_now(engine: "Engine") -> None:
    """Close the open backends without awaiting, then run the ``after_close`` hooks (safe to call twice)."""
    for kind in list(engine._backends):
        backend = engine._backends.pop(kind)
        KINDS[kind].close_now(backend, engine.loop)
    for entry in KINDS.values():
        if entry.after_close is not None:
            entry.after_close(engine)
