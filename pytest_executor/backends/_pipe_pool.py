"""The ``dask`` backend's pool of remote pytest sessions, driven through selectors.

Only the ``dask`` backend uses it (:mod:`pytest_executor.backends.dask`: sessions
hosted on dask workers, their frames relayed through dask's comms); the
``process``, ``forked`` and ``subprocess`` backends run on the engine's
process pool (:mod:`pytest_executor.backends.process`,
:mod:`pytest_executor.backends.subproc`).  What remains here of a local
process pool (pipes, pidfds, process groups) is the default the dask backend
overrides for its remote sessions.

How it stays fast: tasks are prefetched (a worker holds a few queued items,
more when items are short), events travel in batches, reports are pickled
serializable dicts, and the controller blocks on the pipes (``selectors``) and
on pidfds for process exits: no polling.

How it stays reliable: every worker runs in its own process group and watches
a lifeline pipe (it kills its group when the controller dies); a worker that
dies turns the item it was running into a failed report with its output and
exit status and is replaced; a timeout sends SIGABRT (faulthandler dumps the
stack into the worker's output pipe) then kills the group; :meth:`WorkerPool.kill`
reaps every child and grandchild.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from pytest_executor.backends._pipe_events import PoolEvents
from pytest_executor.backends._invocation import drop_basetemp, make_basetemp, split_invocation_args
from pytest_executor.backends._pipe_worker import WorkerProcess
from pytest_executor.backends._protocol import (
    read_available,
)
from pytest_executor.backends._runner import Event, ItemTask

_TAIL_BYTES = 64 * 1024
_ABORT_GRACE = 2.0
"""Seconds a timed-out worker gets to dump its stack after SIGABRT."""


class WorkerPool(PoolEvents):
    """Processes running :mod:`pytest_executor.backends.worker` sessions, driven through selectors.

    Subclasses decide how many workers exist and which gets a task
    (:meth:`_dispatch`) and how much more work is accepted (:meth:`free_slots`).
    """

    name = "pool"
    worker_prefix = "w"
    release_on_bye = True
    """Report ``finished`` once every worker said ``bye``, reaping the processes at cleanup."""
    defers_teardown = True
    """A worker tears an item down when it learns its next task (see :class:`~pytest_executor.backends._runner.Runner`)."""
    _REAP_GRACE = 30.0
    """Seconds a worker that said ``bye`` gets to end its session at cleanup before SIGKILL."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._session: pytest.Session | None = None
        self._selector = selectors.DefaultSelector()
        self._pool: list[WorkerProcess] = []
        self._backlog: deque[ItemTask] = deque()
        self._events: list[Event] = []
        self._controller_ids: list[str] | None = None
        self._spawned = 0
        self._start_failures = 0
        self._finishing = False
        self._finished = False
        self._killed = False
        self._mean_duration: float | None = None
        self._cleanup_registered = False
        self._basetemp: Path | None = None
        self._own_basetemp: str | None = None
        self._options: list[str] = []
        self._positionals: list[str] = []
        self._forward_output = False
        """Echo the workers' own output (``-s``/``tee-sys``); read at :meth:`start`, once options are parsed."""

    # -- Runner protocol --------------------------------------------------

    def start(self, session: pytest.Session) -> None:
        """Start the workers now; they collect while the controller does (idempotent)."""
        if self._session is not None:
            return
        self._session = session
        self._forward_output = self.config.getoption("capture", default="fd") in ("no", "tee-sys")
        options, self._positionals = split_invocation_args(self.config)
        self._options = drop_basetemp(options)
        self._basetemp = self._make_basetemp()
        self._watch_for_cleanup()
        self._start_workers()

    def free_slots(self) -> int:
        """How many more tasks to accept now (subclasses refine)."""
        raise NotImplementedError

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; it is sent to a worker as soon as one can take it."""
        self._learn_controller_ids()
        self._backlog.append(task)
        self._dispatch()

    def next_events(self, timeout: float | None) -> list[Event]:
        """Wait up to ``timeout`` seconds for worker events, return all that are ready."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._events:
            if self._killed or self._finished:
                return [("finished", {})]
            wait = self._wait_time(end)
            for key, _ in self._selector.select(wait):
                kind, worker = key.data
                self._on_readable(kind, worker)
            self._check_deadlines()
            self._dispatch()
            self._check_finished()
            if end is not None and time.monotonic() >= end:
                break
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """No more tasks: workers tear down what is left and exit."""
        self._learn_controller_ids()
        self._finishing = True
        self._dispatch()
        self._shutdown_idle()
        self._check_finished()

    def close(self) -> None:
        """Config cleanup: let workers that said ``bye`` end their sessions, then kill what is left."""
        if self._killed:
            return
        deadline = time.monotonic() + self._REAP_GRACE
        for worker in list(self._pool):
            if worker.bye:
                with contextlib.suppress(Exception):
                    worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """Kill every worker process (and their children) now."""
        if self._killed:
            return
        self._killed = True
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        self._cleanup_basetemp()
        with contextlib.suppress(Exception):
            self._selector.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.kill)

    def _watch_for_cleanup(self) -> None:
        """Make sure the workers are reaped at config cleanup (or exit), once."""
        if not self._cleanup_registered:
            self._cleanup_registered = True
            self.config.add_cleanup(self.close)
            atexit.register(self.kill)

    # -- spawning ---------------------------------------------------------

    def _start_workers(self) -> None:
        raise NotImplementedError

    def _make_basetemp(self) -> Path:
        path, self._own_basetemp = make_basetemp(self.config)
        return path

    def _cleanup_basetemp(self) -> None:
        if self._own_basetemp is not None:
            import shutil

            shutil.rmtree(self._own_basetemp, ignore_errors=True)
            self._own_basetemp = None

    # -- reading ----------------------------------------------------------

    def _wait_time(self, end: float | None) -> float | None:
        now = time.monotonic()
        waits = [] if end is None else [max(0.0, end - now)]
        waits += [max(0.0, w.deadline - now) for w in self._pool if w.deadline is not None]
        if any(w.pidfd is None for w in self._pool):
            waits.append(0.2)  # no pidfd on this platform: notice exits by polling
        return min(waits) if waits else None

    def _on_readable(self, kind: str, worker: WorkerProcess) -> None:
        if worker.exited:
            return
        if kind == "out":
            self._read_output(worker)
        elif kind == "chan":
            self._read_channel(worker)
            if not worker.channel_open and worker.pidfd is None:
                self._reap(worker)
        else:
            self._reap(worker)

    def _read_output(self, worker: WorkerProcess) -> None:
        for data in read_available(worker.out_fd):
            if not data:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(worker.out_fd)
                return
            self._take_output(worker, data)

    def _take_output(self, worker: WorkerProcess, data: bytes) -> None:
        """Keep the tail of a worker's own output; echo it under ``-s``/``--capture=tee-sys``."""
        worker.tail += data
        if len(worker.tail) > _TAIL_BYTES:
            del worker.tail[: len(worker.tail) - _TAIL_BYTES]
        if self._forward_output:
            # Incremental: a character split between two reads is decoded whole.
            sys.stdout.write(worker.out_decoder.decode(data))
            sys.stdout.flush()

    def _read_channel(self, worker: WorkerProcess) -> None:
        if not worker.channel_open:
            return
        for data in read_available(worker.read_fd):
            if not data:
                worker.channel_open = False
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(worker.read_fd)
                return
            for name, kwargs in worker.decoder.feed(data):
                self._on_message(worker, name, kwargs)
            if not worker.channel_open:  # a message closed it
                return

    def _reap(self, worker: WorkerProcess) -> None:
        """The worker process ended: collect its last words, then account for its tasks."""
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill(worker)
        self._read_channel(worker)
        self._read_output(worker)
        self._on_exit(worker)

    # -- deadlines, shutdown ---------------------------------------------

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._pool):
            if worker.deadline is not None and worker.deadline <= now and not worker.exited:
                self._time_out(worker)

    def _time_out(self, worker: WorkerProcess) -> None:
        """Stop a worker whose item ran past its timeout, keeping a stack dump if possible."""
        slot = next((s for s in worker.slots if not s.result), None)
        worker.deadline = None
        worker.timed_out = slot.task.timeout if slot is not None and slot.task.timeout else 0.0
        captured = worker.read_capture()
        self._abort(worker)
        try:
            worker.proc.wait(timeout=_ABORT_GRACE)
        except subprocess.TimeoutExpired:
            self._kill(worker)
        self._read_channel(worker)
        self._read_output(worker)
        worker.capture_fds, fds = [], worker.capture_fds
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.read_capture = lambda: captured  # type: ignore[method-assign]
        self._on_exit(worker)

    def _shutdown_idle(self) -> None:
        """Once finishing, tell workers with nothing left to run to wind down."""
        if not self._finishing or self._backlog:
            return
        for worker in self._pool:
            if not worker.closing and worker.load == 0:
                worker.closing = True
                worker.send("shutdown")

    def _check_finished(self) -> None:
        if not self._finishing or self._backlog or self._finished:
            return
        if all(worker.bye and self.release_on_bye for worker in self._pool):
            self._finished = True

    def _dispatch(self) -> None:
        raise NotImplementedError


