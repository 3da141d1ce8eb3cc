"""Worker states: something set up once per worker process and used by many ProcessJobs.

A :class:`WorkerState` is what actors are in dask or Ray: a model loaded
once per worker, a database connection, a warm pytest session.  A
``ProcessJob(func, args, state=ws)`` runs ``func(value, *args, **kwargs)`` in
a worker holding ``ws``'s value; the pool routes such jobs to workers that
hold it, and sets it up on a free worker when none is free and
``max_workers`` allows.

Two forms:

* ``WorkerState(setup, teardown)``: ``setup()`` runs once in the worker, its
  return value is kept there; ``teardown(value)`` runs when the state is
  dropped (:meth:`ProcessPool.drop_state`) or the worker ends (pool shutdown).
* ``WorkerState(host=fn)``: for a state that must own the worker's main
  stack (a pytest session run by ``pytest.main()``).  ``fn(serve)`` sets up,
  then calls ``serve(value, info=None)`` where jobs must be served (in a
  pytest plugin's ``pytest_runtestloop``).  ``serve`` sends ``info`` (picklable)
  to the engine, serves this worker's jobs on that stack, and returns when
  the state is dropped or the pool shuts down; then ``fn`` finishes its own
  cleanup and returns.  The engine sees ``info`` as ``job.worker_info`` of
  the jobs that ran there, and in :meth:`ProcessPool.state_info`.

Every worker's stdout and stderr are pipes read by the engine: copied to
the engine's own stdout/stderr, and the last 64 KiB since the current job
started are kept for :class:`~executor.engine.job.utils.WorkerCrashedError`
``.output`` (and a timeout's stack dump).  With ``capture_output=True`` a
worker holding the state only keeps its output (the plugin replays it).

A setup or host that raises fails the jobs waiting for the state with
:class:`~executor.engine.job.utils.WorkerStateError` (the worker's traceback
is its cause); the failure sticks (no respawn loop) until the state is
dropped.
"""

from __future__ import annotations

import itertools
import os
import typing as T

_KEYS = itertools.count(1)


class WorkerState:
    """Per-worker state for ProcessJobs: ``setup``/``teardown``, or a ``host`` owning the worker's stack."""

    def __init__(
        self,
        setup: T.Optional[T.Callable[[], T.Any]] = None,
        teardown: T.Optional[T.Callable[[T.Any], T.Any]] = None,
        *,
        host: T.Optional[T.Callable[[T.Callable[..., None]], T.Any]] = None,
        name: T.Optional[str] = None,
        max_workers: T.Optional[int] = None,
        capture_output: bool = False,
    ) -> None:
        if (setup is None) == (host is None):
            raise TypeError("WorkerState needs exactly one of setup= (a callable returning the value) "
                            "or host= (a callable taking serve)")
        for label, fn in (("setup", setup), ("teardown", teardown), ("host", host)):
            if fn is not None and not callable(fn):
                raise TypeError(f"WorkerState {label}= must be callable, got {fn!r}")
        if host is not None and teardown is not None:
            raise TypeError("WorkerState(host=...) does its own cleanup after serve() returns; drop teardown=")
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"WorkerState max_workers= must be an int >= 1 or None, got {max_workers!r}")
        self.setup = setup
        self.teardown = teardown
        self.host = host
        self.max_workers = max_workers
        self.capture_output = bool(capture_output)
        """True: a worker holding this state keeps its stdout/stderr for crash and timeout reports
        (``WorkerCrashedError.output``) instead of copying it to the engine's own stdout/stderr."""
        base = name or getattr(setup or host, "__name__", "state")
        self.name = base
        self.key = f"{base}#{os.getpid()}.{next(_KEYS)}"
        """Identifies the state in the workers (unique per engine process)."""

    @property
    def hosted(self) -> bool:
        """True for the ``host=`` form."""
        return self.host is not None

    def request(self) -> tuple:
        """The request that sets this state up in a worker (only the functions travel, not this object)."""
        if self.host is not None:
            return ("host", self.key, self.host)
        return ("setup", self.key, self.setup, self.teardown)

    def __repr__(self) -> str:
        return f"WorkerState({self.key!r}{', hosted' if self.hosted else ''})"


def defer_reply() -> T.Callable[[T.Any], None]:
    """Inside a ProcessJob served by a hosted state's ``serve(..., until=)``: reply later.

    Returns ``send(value)``; the job's return value is not sent.  The host
    must call ``send`` before it serves the next request (replies go in the
    order of the requests).  See :mod:`executor.engine.backend._worker_serve`.
    """
    from .backend._worker_serve import defer_reply as defer

    return defer()


def worker_id() -> T.Optional[int]:
    """In a worker process: the engine's id of this worker (``job.worker_id``), once it holds a hosted state."""
    from .backend._worker_serve import WORKER_ID_ENV

    value = os.environ.get(WORKER_ID_ENV)
    return int(value) if value else None
