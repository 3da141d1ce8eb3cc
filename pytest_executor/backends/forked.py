"""The ``forked`` backend: each item in a child forked from a warm ``process`` worker.

The workers are those of :class:`~pytest_executor.backends.process.ProcessRunner`
(started, collected and reused for the whole run), told through
:data:`~pytest_executor.backends._protocol.ENV_FORK_ITEMS` to run every item's
whole protocol (setup, call, teardown) in a child forked from themselves; see
:mod:`pytest_executor.backends._forked` for the worker side.  A test thus gets
process isolation at the cost of a ``fork()``: nothing it does (module state,
monkeypatching, a crash, a hang) reaches the next one, and its worker survives.

Where forking is not possible or not safe, :class:`ForkedRunner` says so in
one line and runs the items with the ``subprocess`` backend instead: at once
without ``os.fork``, or when a worker reports threads running after its
collection (a fork copies the locks those threads may hold).
"""

from __future__ import annotations

import os
from typing import final

import pytest

from pytest_executor.backends._fork_shared import check_shared_fixtures
from pytest_executor.backends._forked import FORK_UNSAFE
from pytest_executor.backends._protocol import ENV_FORK_ITEMS
from pytest_executor.backends._runner import Event, ItemTask
from pytest_executor.backends.process import ProcessRunner
from pytest_executor.backends.subproc import SubprocessRunner
from pytest_executor.config.options import get_option

_DEADLINE_GRACE = 15.0
"""Seconds the controller waits past a timeout before it kills a forked worker that did
not time out its child itself (it normally reports the timeout within about two)."""


def forked_pool(config: pytest.Config, workers: int) -> ProcessRunner:
    """``process`` workers that fork a child per item."""
    pool = ProcessRunner(config, workers)
    pool.worker_env = {ENV_FORK_ITEMS: "1"}
    pool.worker_prefix = "f"
    pool.deadline_grace = _DEADLINE_GRACE
    return pool


@final
class ForkedRunner:
    """The ``forked`` backend's :class:`~pytest_executor.backends._runner.Runner`: a forking
    process pool, or a subprocess runner where forking is unavailable or unsafe."""

    name = "forked"
    defers_teardown = False
    """The child tears its item down before the item is done."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._session: pytest.Session | None = None
        self._finishing = False
        self._notice: str | None = None
        self._pending: dict[int, ItemTask] = {}
        """Tasks submitted and not done, by index: what a fallback must run again."""
        self._inner: ProcessRunner | SubprocessRunner
        if hasattr(os, "fork"):
            self._inner = forked_pool(config, workers)
        else:
            self._inner = SubprocessRunner(config, workers)
            self._notice = "os.fork is not available on this platform"

    def prefork(self) -> bool:
        """Fork the workers from the controller before it configures (see :meth:`ProcessRunner.prefork`)."""
        inner = self._inner
        return isinstance(inner, ProcessRunner) and inner.prefork()

    def start(self, session: pytest.Session) -> None:
        """Start the workers (idempotent)."""
        if self._session is None:
            check_shared_fixtures(session, get_option(self.config, "fork-shared") or ())
            self._session = session
            if self._notice is not None:
                self._say_fallback(self._notice)
        self._inner.start(session)

    def free_slots(self) -> int:
        """How many more tasks to accept now."""
        return self._inner.free_slots()

    def submit(self, task: ItemTask) -> None:
        """Queue ``task`` for a worker."""
        self._pending[task.index] = task
        self._inner.submit(task)

    def next_events(self, timeout: float | None) -> list[Event]:
        """The workers' events; a worker's report that forking is unsafe switches to subprocesses."""
        events = self._inner.next_events(timeout)
        for position, (name, data) in enumerate(events):
            if name == "done":
                self._pending.pop(data["index"], None)
            elif name == "error" and FORK_UNSAFE in str(data.get("message", "")):
                self._fall_back(str(data["message"]).split(FORK_UNSAFE, 1)[1].strip())
                # Events after the error come from the dead pool: drop them with it.
                return events[:position] or self._inner.next_events(timeout)
        return events

    def finish(self) -> None:
        """No more tasks will come."""
        self._finishing = True
        self._inner.finish()

    def kill(self) -> None:
        """Kill every worker (and child) now."""
        self._inner.kill()

    def _fall_back(self, reason: str) -> None:
        """Run every task not done yet with a subprocess runner.

        Workers check before they take their first task, so normally none ran
        yet; if one found no thread where its sibling found one (a thread that
        ended meanwhile), its unfinished tasks run again.
        """
        self._inner.kill()
        backlog = list(self._pending.values())
        self._say_fallback(reason)
        runner = SubprocessRunner(self.config, self.workers)
        self._inner = runner
        if self._session is not None:
            runner.start(self._session)
        for task in backlog:
            runner.submit(task)
        if self._finishing:
            runner.finish()

    def _say_fallback(self, reason: str) -> None:
        line = f"executor: forked backend falls back to subprocess: {reason}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line, yellow=True)

__all__ = ["ForkedRunner", "forked_pool"]
