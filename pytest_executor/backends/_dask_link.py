"""The controller's end of the ``dask`` backend's comms: dask's own, and nothing else.

Why these: the controller may sit behind a firewall that lets it reach the
scheduler and nothing more (dask-gateway, dask-kubernetes, a batch system),
so it never listens and never connects to a worker; every byte goes through
the scheduler connection the dask client already has, with dask's TLS and
authentication when the cluster uses them.

* **Sessions → controller: pub/sub.**  Host tasks publish on the run's topic
  with ``Worker.log_event`` (the worker's batched stream: no round trip, no
  blocking) and the controller's ``Client.subscribe_topic`` handler receives
  them in order, per worker.  Task results would only come at the end;
  queues and variables would cost the controller a blocking round trip per
  read; actors need a worker-side object per session.  The scheduler keeps the
  last ``distributed.admin.low-level-log-length`` events of a topic (one topic
  per run), which bounds what a run leaves in its memory.
* **Controller → session: one ``distributed.Queue`` per session.**  Items
  stay queued until the session takes them (a session that is still starting
  loses nothing), and each session's items keep their order: a pump per
  session on the client's event loop makes the queue (first use) and then
  puts them one batch at a time, so the controller's thread never waits for
  the scheduler, and the queues of many sessions are made concurrently rather
  than a blocking round trip each while the scheduler's loop is busiest.
* **Cluster changes**: the scheduler's own ``all`` topic says when a worker
  joins or leaves (``expected`` when it was retired), and the host tasks'
  futures say when the scheduler connection is lost.

Everything arrives on the client's event-loop thread and is queued here; a
byte on a local pipe wakes the controller's selector, which then takes the
queued items on its own thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import Any, final

CLUSTER_TOPIC = "all"
"""The scheduler's own topic: ``add-worker`` / ``remove-worker`` (and more we ignore)."""


@final
class DaskLink:
    """Subscriptions, per-session inboxes and queues, and the wake-up pipe of one run."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.topic = f"pytest-executor-{run_id}"
        self._run_id = run_id
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self._lock = threading.Lock()
        self.inbox: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        """Items from each session's host, in arrival order (filled on the client's loop)."""
        self.news: deque[str] = deque()
        """Sessions with new inbox items, in arrival order (may repeat)."""
        self.cluster: deque[tuple[str, dict[str, Any]]] = deque()
        """Cluster-wide news: ``("add-worker"|"remove-worker", msg)``, ``("lost", {"wid", "reason"})``."""
        self._queues: dict[str, Any] = {}
        """Each session's queue, once its pump made it (client loop only)."""
        self._outbox: dict[str, deque[list[Any]]] = {}
        self._pumping: set[str] = set()
        self._scheduled: set[str] = set()
        """Sessions with a pump scheduled on the client's loop that has not started yet."""
        self._closed = False
        client.subscribe_topic(self.topic, self._on_session_event)
        client.subscribe_topic(CLUSTER_TOPIC, self._on_cluster_event)

    # -- incoming (client loop thread) -------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _on_session_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        inbox = self.inbox.get(msg.get("w", ""))
        if inbox is None:  # not a session of this run (or one we forgot)
            return
        for kind, payload in msg.get("ev", ()):
            inbox.append((str(kind), dict(payload)))
        self.news.append(msg["w"])
        self._wake()

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if isinstance(msg, dict) and msg.get("action") in ("add-worker", "remove-worker") and msg.get("worker"):
            self.cluster.append((str(msg["action"]), msg))
            self._wake()

    def host_done(self, wid: str, future: Any) -> None:
        """Done callback of a host task's future: a task that ended without an ``exit`` is lost."""
        status = getattr(future, "status", "")
        reason = ""
        if status == "error":
            # The error the client was sent with the news (a KilledWorker tells a lost session from
            # a broken one).  Not fetched: a wait on dask's callback thread could outlive the run and
            # leave an unretrieved future behind ("Future exception was never retrieved").
            error = getattr(getattr(future, "_state", None), "exception", None)
            if error is not None:
                reason = f"{type(error).__name__}: {error}"
        elif status == "cancelled":
            reason = "cancelled by the scheduler (the connection to it was lost)"
        self.cluster.append(("lost", {"wid": wid, "status": status, "reason": reason}))
        self._wake()

    def take_wake(self) -> None:
        """Clear the wake-up pipe (the controller then looks at every queue).

        The pipe is drained before the flag is cleared, never after: a wake-up
        written in between would be drained with the flag left set, and every
        later one skipped, until the controller's next timed wake-up.
        """
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.wake_fd, 4096):
                pass
        with self._lock:
            self._woken = False

    # -- sessions -------------------------------------------------------------------

    def open_session(self, wid: str) -> str:
        """Make the session's inbox and outbox; returns its queue's name (for the host task).

        The queue itself is made by the first pump (:meth:`_open_queue`).
        """
        self.inbox[wid] = deque()
        self._outbox[wid] = deque()
        return self._queue_name(wid)

    def _queue_name(self, wid: str) -> str:
        return f"pytest-executor-{self._run_id}-{wid}"

    def forget(self, wid: str) -> None:
        """No more items from ``wid`` (a dead or refused session)."""
        self.inbox.pop(wid, None)

    def send(self, wid: str, item: list[Any]) -> None:
        """Queue ``item`` for session ``wid``: returns at once, the pump puts it in order."""
        outbox = self._outbox.get(wid)
        if outbox is None or self._closed:
            return
        outbox.append(item)
        with self._lock:
            if wid in self._scheduled:  # a pump will run and take it: no second wake-up of the loop
                return
            self._scheduled.add(wid)
        with contextlib.suppress(Exception):  # a client already closed: the run is ending
            self.client.loop.add_callback(self._pump, wid)

    async def _pump(self, wid: str) -> None:
        """Put ``wid``'s pending items, oldest first, one batch per round trip (client loop only)."""
        with self._lock:
            self._scheduled.discard(wid)  # items sent from now on schedule another pump
        if wid in self._pumping:
            return
        self._pumping.add(wid)
        try:
            outbox = self._outbox[wid]
            queue = self._queues.get(wid) or await self._open_queue(wid)
            while outbox:
                batch = []
                while outbox:
                    batch.append(outbox.popleft())
                await queue.put(batch, asynchronous=True)
        except Exception as error:  # the scheduler is gone: the futures tell the controller
            self.cluster.append(("send-failed", {"wid": wid, "reason": repr(error)}))
            self._wake()
        finally:
            self._pumping.discard(wid)

    async def _open_queue(self, wid: str) -> Any:
        """Make ``wid``'s queue on the scheduler (client loop only; the host task makes it too, idempotently)."""
        from distributed import Queue

        # Made in a coroutine of the client's loop, a Queue starts its creation as a task instead of
        # blocking; that task is awaited here, not the Queue: awaiting the Queue would create it twice
        # (two references on the scheduler, one release at the end).
        queue = Queue(self._queue_name(wid), client=self.client)
        started = getattr(queue, "_started", None)
        if started is not None:
            await started
        if self._closed:  # the run ended meanwhile: close() has released the others already
            queue.close()
            raise RuntimeError("the run's link is closed")
        self._queues[wid] = queue
        return queue

    # -- end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Unsubscribe, release the queues, close the pipe (best effort: the scheduler may be gone)."""
        if self._closed:
            return
        self._closed = True
        for topic in (self.topic, CLUSTER_TOPIC):
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        for queue in list(self._queues.values()):  # pumps end once closed: none adds one now
            with contextlib.suppress(Exception):
                queue.close()
        self._queues.clear()
        for fd in (self.wake_fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


__all__ = ["CLUSTER_TOPIC", "DaskLink"]
