"""The ``subprocess`` backend: every item runs in a fresh ``pytest <nodeid>`` process.

Full isolation: nothing (module state, fixtures, monkeypatching, leaked
threads, a crash) carries over from one test to the next.  Each child is an
ordinary pytest session over the controller's options with the positional
arguments replaced by the item's node id, loading
:mod:`pytest_executor.backends.worker` in one-shot mode, so its reports come back over
the same protocol as the ``process`` backend's and look the same in the
terminal.  Crash, timeout and Ctrl-C handling are those of
:class:`~pytest_executor.backends._pipe_pool.WorkerPool`.
"""

from __future__ import annotations

from typing import final

import pytest

from pytest_executor.backends._pipe_pool import WorkerPool
from pytest_executor.backends._pipe_worker import WorkerProcess


@final
class SubprocessRunner(WorkerPool):
    """At most ``workers`` one-shot pytest processes at a time, one per task."""

    name = "subprocess"
    oneshot = True
    worker_prefix = "s"
    release_on_bye = False  # a slot is free only once its process is gone
    defers_teardown = False  # a one-shot worker is told to shut down with its task

    def __init__(self, config: pytest.Config, workers: int) -> None:
        super().__init__(config, workers)

    def _start_workers(self) -> None:
        """Nothing to start ahead: a process is spawned per task."""

    def free_slots(self) -> int:
        """Processes that may still be spawned, minus tasks waiting for one."""
        if self._killed or self._finished:
            return 0
        return max(0, self.workers - len(self._pool) - len(self._backlog))

    def _dispatch(self) -> None:
        while self._backlog and len(self._pool) < self.workers and not (self._killed or self._finished):
            task = self._backlog.popleft()
            worker = self._spawn(task)
            worker.assign(task)
            # The whole conversation is known up front: one task, then shutdown.
            worker.send("run", tasks=[(task.index, -1, task.nodeid, task.timeout)])
            worker.send("shutdown")
            worker.closing = True

    def _after_exit(self, worker: WorkerProcess, crashed: bool) -> None:
        self._dispatch()
        self._check_finished()
