"""The ``dask`` backend: pytest worker sessions hosted on the workers of a dask cluster.

For each session the controller submits one long *host task*
(:func:`~pytest_executor.backends._dask_host.host_session`).  It runs a pytest
worker session as the hosted worker state of an engine process pool of one
worker, as the ``process`` backend does (so tests get a main thread of their
own, signals work, and a crash kills only that session), and relays between it
and the controller through dask's own comms only (see
:mod:`~pytest_executor.backends._dask_link`): the controller opens no
listening socket and no connection of its own, and unpickles only what came
through the dask client.  What the controller makes of the sessions' events is
:mod:`~pytest_executor.backends._dask_pool`'s.

Where sessions run:

* without ``--executor-dask-address``, on a ``LocalCluster`` started for the
  run (one single-threaded worker per ``--executor-workers``; TLS with
  temporary certificates, on 127.0.0.1, no dashboard on the network), from
  the controller's own files.  Its workers come from a fork server that
  imported pytest and the plugins once
  (:func:`~pytest_executor.backends._dask_start.preloaded_modules`), and each
  forks a spare zygote of itself as it starts
  (:mod:`executor.engine.backend._spare`): its session skips an interpreter
  start and those imports.  The run starts on the cluster's first worker; the
  others get a session each as they join (:mod:`~pytest_executor.backends._dask_start`);
* on the scheduler at ``--executor-dask-address`` (TLS credentials from dask's
  configuration, as for any client), or on the Client a
  ``pytest_executor_dask_client(config)`` hook returns, from a copy of the
  rootdir shipped to every worker (:mod:`~pytest_executor.backends._dask_ship`).
  One session per dask worker, and the run follows the cluster: a worker that
  joins gets a session, one that is retired hands its queued tests back;
  ``--executor-workers N`` fixes the number of sessions instead.

Faults: a session that crashes or times out (its host stops it, with a stack
dump), or whose dask worker is killed, turns the test it ran into a failed
report with the output so far (its capture files are followed while it runs)
and is replaced; a scheduler that goes away ends the run with a clear error
for every test that did not run.

Items are handed out as on the ``process`` backend (short ones prefetched),
except that while a session is still starting, every ready session holds only
the item it runs (:meth:`~pytest_executor.backends._dask_pool.SessionPool._ready_depth`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import secrets
import selectors
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from pytest_executor.backends._compact import ENV_COMPACT
from pytest_executor.backends._dask_elastic import ElasticPool
from pytest_executor.backends._dask_link import DaskLink
from pytest_executor.backends._dask_pool import Batches
from pytest_executor.backends._dask_session import RemoteWorker
from pytest_executor.backends._dask_start import LocalStart, check_local_cluster_support, preloaded_modules
from pytest_executor.backends._runner import ItemTask

# _dask_ship imports distributed: it is imported where a run ships its tree (a cluster that exists), so that the
# run's own cluster imports distributed on its start thread while the controller collects.
if TYPE_CHECKING:
    from pytest_executor.backends._dask_ship import Shipment

_CONNECT_TIMEOUT = 5.0
_STOP_WAIT = 5.0
"""Seconds to wait for sessions to report their end once told to stop."""
_CAPTURE_KEEP = 64 * 1024
_GROW_WAIT = 15.0
"""Seconds the end of a run waits for the workers of its LocalCluster still starting."""
_FORWARDED_ENV = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", ENV_COMPACT)
"""Controller environment that shapes the pytest session, passed to remote sessions."""
class DaskRunner(ElasticPool):
    """``--executor-backend=dask``: warm pytest sessions on the workers of a dask cluster."""

    name = "dask"
    worker_prefix = "d"

    def __init__(self, config: pytest.Config) -> None:
        from pytest_executor.config.options import get_option

        self.address: str | None = get_option(config, "dask-address")
        self.requested: int | None = get_option(config, "workers")
        super().__init__(config, self.requested or 2)
        self._run_id = secrets.token_hex(6)
        self._local: Any = None
        """The LocalDaskCluster started for the run, if any."""
        self._client: Any = None
        self._own_client = False
        self._link: DaskLink | None = None
        self._shipment: Shipment | None = None
        self._futures: dict[str, Any] = {}
        self._by_wid: dict[str, RemoteWorker] = {}
        self._elastic = False
        """One session per dask worker, following the cluster (an existing cluster, no worker count)."""
        self._placed: set[str] = set()
        self._grower: LocalStart | None = None
        """The start of the run's LocalCluster, whose thread goes on starting workers after the first."""
        self._dead: str | None = None
        """Why the cluster is gone: every task left fails with this message."""
        self._cluster_start: LocalStart | None = None
        """The LocalCluster for the run while it starts (until the controller took it)."""

    # -- cluster ------------------------------------------------------------------

    def _start_workers(self) -> None:
        if self._connect():
            # the cluster starts while the controller collects; the sessions follow (_started)
            self._cluster_start = LocalStart(self.workers, preloaded_modules(self.config))
            self._selector.register(self._cluster_start.fd, selectors.EVENT_READ, "started")
            return
        self._submit_sessions()

    def _started(self) -> None:
        """On the controller's thread, once the LocalCluster's start is over: submit the sessions (or fail the run)."""
        starting, self._cluster_start = self._cluster_start, None
        if starting is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(starting.fd)
        try:
            self._local, self._client = starting.result()
        except Exception as error:
            if not self._killed:
                self._fail(f"--executor-backend=dask: the LocalCluster for the run did not start: "
                           f"{type(error).__name__}: {error}")
            return
        self._own_client, self._grower = True, starting
        if not self._killed:
            self._submit_sessions()

    def _submit_sessions(self) -> None:
        assert self._client is not None
        self._link = DaskLink(self._client, self._run_id)
        self._selector.register(self._link.wake_fd, selectors.EVENT_READ, "wake")
        if self._local is None:
            from pytest_executor import __version__
            from pytest_executor.backends._dask_ship import check_versions, ship

            check_versions(self._client, __version__)
            self._shipment = ship(self._client, self.config, self._run_id)
        workers = sorted(self._client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            raise pytest.UsageError(f"--executor-dask-address {self.address}: the cluster has no worker")
        if self._elastic:
            self.workers = len(workers)
        if self._local is not None:  # the run's own cluster is growing: a session per worker as it joins
            for address in workers[: self.workers]:
                self._place(address)
            return
        for number in range(self.workers):
            self._spawn_remote(workers[number % len(workers)])

    def _connect(self) -> bool:
        """Connect to the cluster given by the hook or address; True when a LocalCluster must be started instead."""
        # distributed is imported here only for a cluster that exists: the run's own cluster imports it
        # on its start thread, while this one collects
        if importlib.util.find_spec("distributed") is None:
            raise pytest.UsageError(
                "--executor-backend=dask needs dask.distributed: pip install 'pytest-executor[dask]'"
            )
        client = self.config.hook.pytest_executor_dask_client(config=self.config)
        if client is not None:
            import distributed

            if not isinstance(client, distributed.Client) or getattr(client, "_asynchronous", False):
                raise pytest.UsageError(
                    "pytest_executor_dask_client must return a synchronous distributed.Client "
                    f"(or None), got {client!r}"
                )
            self._client, self._elastic = client, not self.requested
        elif self.address:
            from executor.engine.backend.dask import connect_client

            try:
                self._client = connect_client(self.address, _CONNECT_TIMEOUT)
            except ConnectionError as error:
                reason = "" if "within" in str(error) else f" ({error})"
                raise pytest.UsageError(
                    f"--executor-dask-address {self.address}: cannot reach the dask scheduler "
                    f"within {_CONNECT_TIMEOUT:g} s{reason}"
                ) from None
            self._own_client, self._elastic = True, not self.requested
        else:
            check_local_cluster_support()
            return True
        return False

    def _scheduler_address(self) -> str:
        with contextlib.suppress(Exception):
            return str(self._client.scheduler.address)
        return str(self.address or "")

    # -- sessions ---------------------------------------------------------------------

    def _remap_args(self, args: list[str]) -> list[Any]:
        """The session's arguments: as given, or pointing into the shipped copy of the rootdir."""
        if self._shipment is None:
            return list(args)
        from pytest_executor.backends._dask_ship import remap_args

        return remap_args(args, self.config)

    def _session_spec(self, wid: str, queue: str) -> dict[str, Any]:
        from pytest_executor import __version__
        from pytest_executor.backends._invocation import python_prefix

        assert self._link is not None and self._basetemp is not None
        shipped = self._shipment is not None
        args = [*self._options, *self._positionals]
        env = {name: value for name, value in os.environ.items() if name in _FORWARDED_ENV}
        if shipped:
            env.pop("PYTHONPATH", None)  # the controller's paths: the copy's source roots replace them
        return {
            "wid": wid,
            "topic": self._link.topic,
            "queue": queue,
            "argv": self._remap_args(args),
            "cwd": self._shipment.cwd if self._shipment else str(self.config.invocation_params.dir),
            "env": env,
            "copy": self._shipment.name if self._shipment else None,
            "pythonpath": self._shipment.pythonpath if self._shipment else [],
            "module": python_prefix()[1:3] == ["-m", "pytest"],
            "version": __version__,
            "rootdir": str(self.config.rootpath),
            # the same machine: a basetemp inside the controller's, as on the process backend (else in the copy's)
            "basetemp": str(self._basetemp),
        }

    def _spawn_remote(self, dask_worker: str | None) -> RemoteWorker:
        from pytest_executor.backends._dask_host import host_session

        assert self._link is not None
        wid = f"{self.worker_prefix}{self._spawned}"
        self._spawned += 1
        queue = self._link.open_session(wid)
        worker = RemoteWorker(wid, link=self._link)
        self._pool.append(worker)
        self._by_wid[wid] = worker
        future = self._client.submit(
            host_session,
            self._session_spec(wid, queue),
            key=f"pytest-executor-session-{self._run_id}-{wid}",
            workers=[dask_worker] if dask_worker else None,
            # Loose: if that worker leaves first, the session starts on another one.
            allow_other_workers=dask_worker is not None,
            pure=False,
        )
        self._futures[wid] = future
        future.add_done_callback(functools.partial(self._link.host_done, wid))
        return worker

    # -- events ---------------------------------------------------------------------------

    def _wait_time(self, end: float | None) -> float | None:
        self._dispatch()  # what was submitted since the last wait, in one batch per session
        link = self._link
        if link is not None and (link.news or link.cluster):
            # news whose wake-up byte a wait for one session took: handle them now
            self._take_news()
        if self._events:
            return 0.0
        return None if end is None else max(0.0, end - time.monotonic())

    def _on_readable(self, kind: str) -> None:
        if kind == "wake":
            self._take_news()
        elif kind == "started":
            self._started()

    def _take_news(self) -> None:
        link = self._link
        if link is None:
            return
        link.take_wake()
        while link.cluster:
            self._on_cluster(*link.cluster.popleft())
        while link.news:
            self._drain(link.news.popleft())

    def _drain(self, wid: str, notify: bool = True) -> None:
        """Handle the items a session's host sent, in order; with ``notify``, account for its exit."""
        worker = self._by_wid.get(wid)
        inbox = self._link.inbox.get(wid) if self._link is not None else None
        if worker is None or inbox is None:
            return
        while inbox:
            kind, payload = inbox.popleft()
            if kind == "out":
                self._take_output(worker, payload["data"])
            elif kind == "cap":
                self._take_capture(worker, payload)
            elif kind == "start":
                if payload.get("error"):
                    self._fail(str(payload["error"]))
                    return
                worker.address = str(payload.get("address"))
            elif kind == "exit":
                worker.returncode = int(payload["returncode"])
                worker.crashed_index = payload.get("index")
                worker.timed_out = payload.get("timeout")
                if notify:
                    self._exited(worker)
                return
            else:  # collected, started, events, fatal, bye
                self._on_message(worker, kind, payload)

    @staticmethod
    def _take_capture(worker: RemoteWorker, payload: dict[str, Any]) -> None:
        stream = int(payload["stream"])
        if stream not in (0, 1):
            return
        text = bytes(payload["data"]).decode("utf-8", "replace")
        kept = text if payload.get("reset") else worker.captured[stream] + text
        worker.captured[stream] = kept[-_CAPTURE_KEEP:]

    def _exited(self, worker: RemoteWorker) -> None:
        if not worker.exited and worker in self._pool:
            self._drain(worker.wid, notify=False)
            self._on_exit(worker)

    def _wait_exit(self, worker: RemoteWorker, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        link = self._link
        while worker.returncode is None:
            self._drain(worker.wid, notify=False)
            if worker.returncode is not None:
                break
            if link is None or self._dead or worker.wid not in link.inbox:
                worker.returncode = -int(signal.SIGKILL)
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            ready = selectors.DefaultSelector()
            try:
                ready.register(link.wake_fd, selectors.EVENT_READ)
                ready.select(left)
            finally:
                ready.close()
            link.take_wake()
            while link.cluster:  # a lost worker or scheduler ends the wait
                kind, msg = link.cluster.popleft()
                self._on_cluster(kind, msg)

    # -- process control, the remote way -----------------------------------------------

    def _kill(self, worker: RemoteWorker) -> None:
        if worker.returncode is None:
            worker.send(["stop"])
            if not (self._dead or self._killed):
                self._wait_exit(worker, _STOP_WAIT)
        if worker.returncode is None:
            worker.returncode = -int(signal.SIGKILL)
        self._let_go(worker)

    def _let_go(self, worker: RemoteWorker) -> None:
        """Forget a session's inbox and cancel its task (a task re-run elsewhere must not live on)."""
        if self._link is not None:
            self._link.forget(worker.wid)
        future = self._futures.pop(worker.wid, None)
        if future is not None and self._client is not None and not self._dead:
            with contextlib.suppress(Exception):
                self._client.cancel([future], force=True)

    # -- pool hooks ---------------------------------------------------------------------------

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``: the queued tasks are handed out together at the next wait for events.

        One ``run`` message per session per round, instead of one per test,
        each a trip through the client's loop and the scheduler.
        """
        if self._dead:
            super().submit(task)  # fails it at once
            return
        self._learn_controller_ids()
        self._backlog.append(task)

    def _dispatch(self) -> None:
        """Hand queued tasks to the least loaded sessions, a batch per session.

        A session whose prefetch is more than half full gets nothing this
        round: refilled by half its depth at a time, it costs a queue put per
        several tests rather than one per test.
        """
        if self._killed or self._finished or self._dead:
            return
        depth = self._ready_depth()
        ready = self._ready_workers()
        refill = ready if depth <= 2 else [w for w in ready if w.load <= depth // 2]
        batches: Batches = {}
        while self._backlog:
            task = self._backlog[0]
            # a retry goes back to its worker whatever its load (see _choose_worker)
            worker = self._choose_worker(task, ready if task.worker is not None else refill, depth)
            if worker is None:
                break
            self._hand_out(worker, self._backlog.popleft(), batches)
        for worker, tasks in batches.values():  # one item per session per round
            worker.send(["run", tasks])

    def _depth(self) -> int:
        """Tasks a session may hold: more than on the process backend, a round trip through dask costs more.

        Handing the next item out only when the last one's result is back
        would add the round trip (session → scheduler → controller → queue →
        session, several milliseconds) to every test; one item queued behind
        the running one hides it for items up to a second long, at the price
        of at most one item of imbalance per session at the end.
        """
        mean = self._mean_duration
        if mean is None or mean >= 1.0:
            return 1
        if mean >= 0.05:
            return 2
        if mean >= 0.005:
            return 4
        # tiny items: the round trip is worth dozens of them (at most ~50 ms of imbalance at the end)
        return 16 if mean >= 0.001 else 48

    def _after_exit(self, worker: RemoteWorker, crashed: bool) -> None:
        self._by_wid.pop(worker.wid, None)
        self._let_go(worker)
        if self._killed or self._finished or self._dead:
            return
        if self._wants_sessions() and len(self._pool) < self.workers:
            self._spawn_remote(None)  # dask places it on a worker with a free thread
        self._shutdown_idle()
        self._check_finished()

    # -- the end ------------------------------------------------------------------------------------

    def kill(self) -> None:
        """Stop every session (all at once, then wait for them together), then release the cluster."""
        if self._killed:
            return
        live = [w for w in self._pool if w.returncode is None]
        for worker in live:
            worker.send(["stop"])
        deadline = time.monotonic() + (0.0 if self._dead else _STOP_WAIT)
        for worker in live:
            self._wait_exit(worker, max(0.0, deadline - time.monotonic()))
        super().kill()
        self._close_cluster()

    def _close_cluster(self) -> None:
        self._started()  # a start still under way is let finish: then it is closed like any other
        link, self._link = self._link, None
        client, self._client = self._client, None
        if link is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(link.wake_fd)
            link.close()
        if client is not None:
            futures = list(self._futures.values())
            self._futures.clear()
            if futures and not self._dead:
                with contextlib.suppress(Exception):
                    client.cancel(futures, force=True)
            if self._shipment is not None and not self._dead:
                from pytest_executor.backends._dask_ship import unship

                unship(client, self._shipment)
            if self._own_client:
                from executor.engine.backend.dask import close_client_quietly

                close_client_quietly(client, timeout=5 if not self._dead else 2, scheduler_gone=bool(self._dead))
        grower, self._grower = self._grower, None
        if grower is not None:
            # Workers still starting are let finish first: closing a cluster while a worker registers
            # races distributed's own bookkeeping (a KeyError that aborts the close half-way).
            grower.join(_GROW_WAIT)
        local, self._local = self._local, None
        if local is not None:
            local.close(timeout=5)


__all__ = ["DaskRunner"]
