"""The LocalCluster of a ``dask`` run, started in the background while the controller collects.

Starting a cluster takes a second or more (a scheduler, TLS certificates, a
fork server, one process per worker); the controller's own collection needs
none of it.  :class:`LocalStart` starts it on a thread of its own and says
when it is over with a byte on a pipe the controller's selector watches; the
controller then takes the result on its own thread and submits the sessions.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any, final


SETTINGS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.worker.memory.monitor-interval": "1s",
}
"""dask settings of the run's cluster, whose servers would otherwise spend the cores the tests need
on watching themselves.  Each scheduler, nanny and worker is a server with its own monitors, and
the scheduler and the nannies all live in the controller's process:

* the workers' statistical profiler wakes each up every 10 ms, to sample only our host task's wait;
* the system monitor reads ``/proc`` and ``/sys`` (CPU, memory, network, every disk) twice a second
  in every server, for a dashboard nobody watches during a test run;
* the event-loop health check ticks every 20 ms in every server (a blocked loop is still reported,
  after the same 3 s);
* each nanny measures its worker's memory ten times a second; the tests run in the sessions' own
  processes, which it does not measure.

With 16 workers on 2 cores these cost about a second of wall time per run.
"""


@final
class LocalStart:
    """A LocalCluster of ``workers`` single-threaded workers, starting on a thread; :attr:`fd` is readable once over."""

    def __init__(self, workers: int, preload: Sequence[str]) -> None:
        self.fd, self._done_w = os.pipe()
        self._workers = workers
        self._preload = tuple(preload)
        self._cluster: Any = None
        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pytest-executor-dask-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from executor.engine.backend.dask import LocalDaskCluster

        try:
            self._cluster = LocalDaskCluster(self._workers, threads_per_worker=1, preload=self._preload, config=SETTINGS)
            self._client = self._cluster.client()
        except BaseException as error:  # the controller's thread reports it (result)
            self._error = error
        finally:
            with contextlib.suppress(OSError):
                os.write(self._done_w, b"x")
            with contextlib.suppress(OSError):
                os.close(self._done_w)

    def result(self) -> tuple[Any, Any]:
        """Wait for the start to be over: ``(LocalDaskCluster, client)``, or what the start raised.

        A cluster whose client could not be made is closed before raising.
        """
        self._thread.join()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self._error is not None:
            if self._cluster is not None:
                self._cluster.close(timeout=5)
            raise self._error
        return self._cluster, self._client


__all__ = ["SETTINGS", "LocalStart"]
