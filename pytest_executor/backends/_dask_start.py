"""The LocalCluster of a ``dask`` run, started in the background while the controller collects.

Starting a cluster takes a second or more (a scheduler, TLS certificates, a
fork server, one process per worker); the controller's own collection needs
none of it.  :class:`LocalStart` starts it on a thread of its own with one
worker and says so with a byte on a pipe the controller's selector watches;
the controller then takes the cluster on its own thread and starts the first
session, while the thread starts the other workers.  Sessions follow them as
they join: on few cores, the first tests run while the last workers start.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any, final

import pytest


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


_HOST_MODULES = ("pytest", "pytest_executor.backends._dask_host", "pytest_executor.backends._dask_quiet",
                 "executor.engine.backend._spare_preload")
"""Imported once by the fork server of a LocalCluster started for the run, not by each worker.

``_dask_quiet`` filters a shutdown race out of the workers' logs; the last one gives each worker
its spare zygote (see :mod:`executor.engine.backend._spare`).
"""


def preloaded_modules(config: pytest.Config) -> list[str]:
    """What the fork server of the run's LocalCluster imports once for all its sessions.

    This plugin's modules imported so far, and the plugin modules of the run
    that pytest did not rewrite (its own, mostly) and that live outside its
    rootdir.  A module pytest rewrites (installed plugins, by default) is left
    to each session: imported beforehand, it could not be rewritten there.
    Conftests and plugins of the tree under test are each session's too.
    """
    root = str(config.rootpath) + os.sep
    rewriter = type(config.pluginmanager.rewrite_hook)
    plugins = {
        plugin.__name__ for plugin in config.pluginmanager.get_plugins()
        if isinstance(plugin, types.ModuleType) and plugin.__name__ != "__main__"
        and not isinstance(getattr(plugin, "__loader__", None), rewriter)
        and not str(getattr(plugin, "__file__", None) or root).startswith(root)
    }
    ours = {name for name in list(sys.modules) if name.split(".")[0] in ("pytest_executor", "executor")}
    return [*_HOST_MODULES, *sorted(plugins | ours)]


def check_local_cluster_support() -> None:
    """A usage error now, before collection, if the LocalCluster for the run could not be secured."""
    from executor.engine.backend.dask import check_tls_support

    try:
        check_tls_support()
    except ImportError as error:
        raise pytest.UsageError(f"--executor-backend=dask without --executor-dask-address: {error}") from None


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
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pytest-executor-dask-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from executor.engine.backend.dask import LocalDaskCluster

        try:
            self._cluster = LocalDaskCluster(self._workers, threads_per_worker=1, preload=self._preload, config=SETTINGS,
                                             start_workers=1)
            self._client = self._cluster.client()
        except BaseException as error:  # the controller's thread reports it (result)
            self._error = error
        finally:
            self._first.set()
            with contextlib.suppress(OSError):
                os.write(self._done_w, b"x")
            with contextlib.suppress(OSError):
                os.close(self._done_w)
        if self._error is None and self._workers > 1:
            # Workers that do not start leave the run fewer sessions, not a failure; closing the
            # cluster (the run is over) ends the wait.
            with contextlib.suppress(Exception):
                self._cluster.grow()

    def result(self) -> tuple[Any, Any]:
        """Wait for the first worker: ``(LocalDaskCluster, client)``, or what the start raised.

        A cluster whose client could not be made is closed before raising.
        The others keep starting (see the module docstring).
        """
        self._first.wait()
        if self._error is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self._error is not None:
            if self._cluster is not None:
                self._cluster.close(timeout=5)
            raise self._error
        return self._cluster, self._client

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (once the cluster is closed, its wait for more workers ends)."""
        self._thread.join(timeout)


__all__ = ["SETTINGS", "LocalStart", "check_local_cluster_support", "preloaded_modules"]
