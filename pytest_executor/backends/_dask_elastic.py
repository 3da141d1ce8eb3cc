"""The ``dask`` backend's answers to a changing cluster: workers that join, leave, die, or a scheduler that goes.

* A worker joins: on an elastic run (a cluster given by address or by the
  hook, no ``--executor-workers``) it gets a session of its own; so it does
  on the run's own LocalCluster while it grows to its size.
* A worker is retired (``retire_workers``, an autoscaler scaling down: the
  scheduler says the removal was *expected*): the items its session had
  queued go back to the backlog for the other sessions; an item that already
  had a report replayed fails instead (nothing is reported twice), and one
  whose outcome was known only loses its teardown.
* A worker dies: its session is lost like a crashed process (the item it ran
  fails with the output forwarded so far; ``retries`` apply) and is replaced.
* The scheduler goes: every item queued, running or submitted later fails at
  once with the reason, and the run ends.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from pytest_executor.backends._dask_pool import SessionPool
from pytest_executor.backends._dask_session import RemoteWorker, Slot
from pytest_executor.backends._failed_item import item_report
from pytest_executor.backends._runner import ItemTask


class ElasticPool(SessionPool):
    """A pool of dask-hosted sessions that follows its cluster (see the module docstring)."""

    _client: Any
    _elastic: bool
    _local: Any
    """The run's own LocalCluster, if it started one: sessions follow its workers as they join, up to ``workers``."""
    _placed: set[str]
    """Addresses of the dask workers given a session of their own while the cluster grows."""
    _dead: str | None
    _by_wid: dict[str, RemoteWorker]

    # -- provided by the runner -------------------------------------------------------

    def _drain(self, wid: str, notify: bool = True) -> None:
        """Handle what the session's host sent so far."""
        raise NotImplementedError

    def _exited(self, worker: RemoteWorker) -> None:
        """Account for a session that ended."""
        raise NotImplementedError

    def _spawn_remote(self, dask_worker: str | None) -> RemoteWorker:
        """Start one more session (on ``dask_worker`` if given)."""
        raise NotImplementedError

    def _let_go(self, worker: Any) -> None:
        """Forget a session and cancel its host task."""
        raise NotImplementedError

    def _scheduler_address(self) -> str:
        """The scheduler's address, for messages."""
        raise NotImplementedError

    # -- cluster news ----------------------------------------------------------------------

    def _place(self, address: str) -> None:
        """Give the dask worker at ``address`` a session of its own (the run's own cluster, as it grows)."""
        self._placed.add(address)
        self._spawn_remote(address)

    def _on_cluster(self, kind: str, msg: dict[str, Any]) -> None:
        if kind == "add-worker":
            address = str(msg["worker"])
            if self._elastic and self._wants_sessions():
                self.workers += 1
                self._spawn_remote(address)
            elif (self._local is not None and self._wants_sessions() and address not in self._placed
                  and len(self._pool) < self.workers):
                self._place(address)
        elif kind == "remove-worker":
            if self._elastic:
                self.workers = max(1, self.workers - 1)
            gone = [w for w in self._pool if w.address == msg["worker"]]
            for worker in gone:
                if worker.exited:
                    continue
                if msg.get("expected"):
                    self._hand_back(worker)
                else:
                    self._lost(worker)
        elif kind in ("lost", "send-failed"):
            if self._client is None or self._client.status != "running":
                # the client lost the scheduler: it cancels every future while it tries to reconnect
                self._scheduler_lost(str(msg.get("reason") or "connection lost"))
                return
            session = self._by_wid.get(str(msg["wid"]))
            if session is not None and not session.exited and session.returncode is None:
                if msg.get("status") == "error" and session.address is None:
                    if str(msg.get("reason", "")).startswith("KilledWorker"):
                        self._replace_unstarted(session)
                    else:
                        self._fail(f"session {session.wid} could not start on the dask cluster: {msg.get('reason')}")
                else:
                    self._lost(session)

    def _wants_sessions(self) -> bool:
        return not (self._killed or self._finished or self._dead) and (not self._finishing or bool(self._backlog))

    def _shutdown_idle(self) -> None:
        """Also drop, once nothing is left to hand out, the sessions whose host task never started.

        Such a session holds nothing, and dask may never place its task (its
        workers restarting, or busy with host tasks of killed workers it runs
        again): the run must not wait for it to say ``bye``.
        """
        if self._finishing and not self._backlog:
            for worker in [w for w in self._pool if w.address is None and w.load == 0]:
                self._pool.remove(worker)
                self._abandon(worker)
        super()._shutdown_idle()

    def _abandon(self, worker: RemoteWorker) -> None:
        """End our side of a session without waiting for it: closed, forgotten, its host task cancelled."""
        if worker.returncode is None:
            worker.returncode = -int(signal.SIGKILL)
        self._close_worker(worker, kill=False)
        self._let_go(worker)

    def _lost(self, worker: RemoteWorker) -> None:
        """The session's dask worker died (or its task vanished): a crash, as on the process backend."""
        self._drain(worker.wid, notify=False)
        if worker.exited:
            return
        if worker.returncode is None:
            worker.lost = True
            worker.returncode = -int(signal.SIGKILL)
            worker.tail += f"\n[the dask worker {worker.address or '?'} hosting this session was lost]\n".encode()
        self._exited(worker)

    def _replace_unstarted(self, worker: RemoteWorker) -> None:
        """A session whose dask worker died before its host task started: another takes its place.

        On a cluster that runs no task again after its worker died (ours:
        ``allowed-failures`` 0, so that a killed worker's session is never run a
        second time beside its replacement) the task fails with ``KilledWorker``.
        The session held nothing; it is no start failure of its own.
        """
        if worker in self._pool:
            self._pool.remove(worker)
        self._abandon(worker)
        self._after_exit(worker, crashed=False)

    def _hand_back(self, worker: RemoteWorker) -> None:
        """A retired worker's session: its queued items go back to the backlog, none reported twice."""
        self._drain(worker.wid, notify=False)
        if worker.exited:
            return
        slots = list(worker.slots)
        worker.slots.clear()
        worker.load = 0
        message = f"the dask worker {worker.address} hosting worker {worker.wid} was retired while it ran this test"
        for slot in reversed(slots):
            if slot.result:  # the outcome is known; its teardown could not run
                self._close_slot(worker, slot)
            elif slot.task.nodeid in worker.reported:
                self._fail_slot(worker, slot, "call", message, worker.read_capture())
            else:
                self._backlog.appendleft(slot.task)
        if worker.returncode is None:
            worker.returncode = -int(signal.SIGTERM)
        worker.closing = True  # not a crash: no start failure is counted
        self._close_worker(worker, kill=False)
        if worker in self._pool:
            self._pool.remove(worker)
        self._events.append(("worker_lost", {"worker": worker.wid, "reason": "its dask worker was retired"}))
        self._after_exit(worker, crashed=False)

    def _close_slot(self, worker: RemoteWorker, slot: Slot) -> None:
        """End an item whose outcome was reported but whose teardown was lost with its worker."""
        report = item_report(self._session, slot.task, "teardown", "passed", None, [], 0)
        self._events.append(("logreport", {"report": report, "worker": worker.wid}))
        start = slot.start or time.time()
        self._events.append(("done", {"index": slot.task.index, "worker": worker.wid, "start": start,
                                      "stop": time.time(), "crashed": False}))

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; once the cluster is gone, fail it at once with the reason."""
        if self._dead:
            self._learn_controller_ids()
            self._fail_task(task)
            return
        super().submit(task)

    def free_slots(self) -> int:
        """Free prefetch capacity of the sessions minus tasks not handed out; anything once the cluster is gone."""
        if self._dead:
            return 1 << 20
        if self._killed or self._finished:
            return 0
        return self._free_prefetch()

    # -- the cluster went away --------------------------------------------------------------------

    def _scheduler_lost(self, reason: str) -> None:
        """Fail whatever is queued or running, and every task submitted from now on."""
        if self._dead or self._killed or self._finished:
            return
        gone = f"the dask scheduler {self._scheduler_address()} went away ({reason})"
        self._dead = f"{gone}; this test did not run"
        self._learn_controller_ids()
        for worker in list(self._pool):
            slots = list(worker.slots)
            worker.slots.clear()
            worker.load = 0
            for slot in slots:
                if slot.result:  # the outcome is known: only its teardown is lost
                    self._close_slot(worker, slot)
                elif slot.started:
                    self._fail_slot(worker, slot, "call", f"{gone} while this test ran", worker.read_capture())
                else:
                    self._fail_slot(worker, slot, "setup", self._dead, ("", ""))
            self._abandon(worker)
        self._pool.clear()
        while self._backlog:
            self._fail_task(self._backlog.popleft())
        self._events.append(("worker_lost", {"worker": "every", "reason": gone}))
        self._check_finished()

    def _fail_task(self, task: ItemTask) -> None:
        stand_in = RemoteWorker("-")
        self._fail_slot(stand_in, Slot(task), "setup", self._dead or "the dask cluster is gone", ("", ""))

    def _check_finished(self) -> None:
        if self._dead and self._finishing:
            self._finished = True
            return
        super()._check_finished()


__all__ = ["ElasticPool"]
