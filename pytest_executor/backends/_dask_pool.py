"""The controller's side of the ``dask`` backend's sessions: events, choices and failures.

:class:`SessionPool` (the base of :class:`~pytest_executor.backends.dask.DaskRunner`)
keeps the sessions its host tasks run (:class:`~._dask_session.RemoteWorker`),
turns what their hosts send (their collection, the start of each item, the
events of each call's answer, how the session ended) into the runner events of
:mod:`pytest_executor.backends._runner`, chooses which session gets a task
(prefetch depth, module affinity, a retry on the session that holds the
teardown) and turns a session that died or timed out into the failed reports
of the item it ran.

An item's teardown (and its ``done``) is deferred until its session knows the
next item, so it comes with the *next* call's answer; a session that dies
takes the teardowns it owed with it, and those items are ended here without
them, as on the ``process`` backend.
"""

from __future__ import annotations

import atexit
import contextlib
import selectors
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from pytest_executor.backends._compact import CompactReports
from pytest_executor.backends._dask_session import RemoteWorker, Slot
from pytest_executor.backends._failed_item import crash_message, exit_reason, failed_item_events, item_location
from pytest_executor.backends._invocation import drop_basetemp, make_basetemp, split_invocation_args
from pytest_executor.backends._runner import Event, ItemTask, collection_mismatch, warning_event

_MAX_START_FAILURES = 3
Batches = dict[str, tuple[RemoteWorker, list[tuple[int, int, str, float | None]]]]
"""Tasks handed out in one dispatch round, by session id: ``(index, windex, nodeid, timeout)`` each."""


class SessionPool:
    """Sessions hosted on dask workers, driven from the controller's thread (see the module docstring)."""

    name = "pool"
    worker_prefix = "w"
    defers_teardown = True
    """A session tears an item down when it learns its next task (see :class:`~._runner.Runner`)."""
    _REAP_GRACE = 30.0
    """Seconds a session that said ``bye`` gets to end at cleanup before it is stopped."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._session: pytest.Session | None = None
        self._compact = CompactReports(None)
        self._selector = selectors.DefaultSelector()
        self._pool: list[RemoteWorker] = []
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
        """Echo the sessions' own output (``-s``/``tee-sys``); read at :meth:`start`, once options are parsed."""

    # -- Runner protocol --------------------------------------------------

    def start(self, session: pytest.Session) -> None:
        """Start the sessions now; they collect while the controller does (idempotent)."""
        if self._session is not None:
            return
        self._session = session
        self._compact = CompactReports(session)
        self._forward_output = self.config.getoption("capture", default="fd") in ("no", "tee-sys")
        options, self._positionals = split_invocation_args(self.config)
        self._options = drop_basetemp(options)
        self._basetemp, self._own_basetemp = make_basetemp(self.config)
        if not self._cleanup_registered:
            self._cleanup_registered = True
            self.config.add_cleanup(self.close)
            atexit.register(self.kill)
        self._start_workers()

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; it is handed to a session at the next :meth:`_dispatch`."""
        self._learn_controller_ids()
        self._backlog.append(task)

    def next_events(self, timeout: float | None) -> list[Event]:
        """Wait up to ``timeout`` seconds for what the hosts sent, return the events it makes."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._events:
            if self._killed or self._finished:
                return [("finished", {})]
            for key, _ in self._selector.select(self._wait_time(end)):
                self._on_readable(key.data)
            self._dispatch()
            self._check_finished()
            if end is not None and time.monotonic() >= end:
                break
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """No more tasks: sessions tear down what is left and end."""
        self._learn_controller_ids()
        self._finishing = True
        self._dispatch()
        self._shutdown_idle()
        self._check_finished()

    def close(self) -> None:
        """Config cleanup: let sessions that said ``bye`` end, then stop what is left."""
        if self._killed:
            return
        deadline = time.monotonic() + self._REAP_GRACE
        for worker in list(self._pool):
            if worker.bye:
                self._wait_exit(worker, max(0.0, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """Stop every session now."""
        if self._killed:
            return
        self._killed = True
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        if self._own_basetemp is not None:
            import shutil

            shutil.rmtree(self._own_basetemp, ignore_errors=True)
            self._own_basetemp = None
        with contextlib.suppress(Exception):
            self._selector.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.kill)

    # -- provided by the runner ------------------------------------------------

    def _start_workers(self) -> None:
        raise NotImplementedError

    def _wait_time(self, end: float | None) -> float | None:
        raise NotImplementedError

    def _on_readable(self, kind: str) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        raise NotImplementedError

    def _wait_exit(self, worker: RemoteWorker, timeout: float | None) -> None:
        """Wait until the session's end is known (or ``timeout``)."""
        raise NotImplementedError

    def _kill(self, worker: RemoteWorker) -> None:
        """Stop the session and let go of its host task."""
        raise NotImplementedError

    def _after_exit(self, worker: RemoteWorker, crashed: bool) -> None:
        """Replace the session if more work may come."""

    # -- what the hosts send -------------------------------------------------

    def _take_output(self, worker: RemoteWorker, data: bytes) -> None:
        """Keep the tail of a session's own output; echo it under ``-s``/``--capture=tee-sys``."""
        worker.take_output(data)
        if self._forward_output:
            # Incremental: a character split between two events is decoded whole.
            sys.stdout.write(worker.out_decoder.decode(data))
            sys.stdout.flush()

    def _on_message(self, worker: RemoteWorker, name: str, kwargs: dict[str, Any]) -> None:
        if name == "events":
            for event_name, event_kwargs in kwargs["items"]:
                self._on_event(worker, event_name, event_kwargs)
        elif name == "started":
            self._on_started(worker, int(kwargs["index"]))
        elif name == "collected":
            worker.collected = kwargs
            self._verify(worker)
        elif name == "fatal":
            worker.fatal = str(kwargs.get("message", ""))
        elif name == "bye":
            worker.bye = True

    def _learn_controller_ids(self) -> None:
        if self._controller_ids is None and self._session is not None:
            self._controller_ids = [item.nodeid for item in self._session.items]
            for worker in self._pool:
                if worker.collected is not None and not worker.ready:
                    self._verify(worker)

    def _verify(self, worker: RemoteWorker) -> None:
        """Check a session collected what the controller did; map indices when orders differ."""
        if worker.ready or worker.collected is None:
            return
        self._start_failures = 0
        if self._controller_ids is None:
            return
        ids: list[str] = list(worker.collected.get("ids", []))
        if ids == self._controller_ids:
            worker.ready = True
            return
        known = ids + list(worker.collected.get("deselected", []))
        position = {nodeid: i for i, nodeid in enumerate(known)}
        message = collection_mismatch(worker.wid, self._controller_ids, ids, position)
        if message is not None:
            self._fail(message)
            return
        worker.index_map = [position[nodeid] for nodeid in self._controller_ids]
        worker.ready = True

    @staticmethod
    def _slot(worker: RemoteWorker, index: int, resolved: bool | None = None) -> Slot | None:
        """The first slot of item ``index`` (whose outcome is known or not, if ``resolved`` says)."""
        for slot in worker.slots:
            if slot.task.index == index and (resolved is None or slot.result == resolved):
                return slot
        return None

    def _on_started(self, worker: RemoteWorker, index: int) -> None:
        """The host started the item's call: show it running now, not once its answer is back."""
        slot = next((s for s in worker.slots if s.task.index == index and not s.started), None)
        if slot is None:
            return
        slot.started = slot.announced = True
        slot.start = time.time()
        worker.captured = ["", ""]  # what the host forwards from now on is this item's
        self._events.append(("logstart", {"nodeid": slot.task.nodeid, "location": item_location(self._session, slot.task),
                                          "worker": worker.wid}))

    def _on_event(self, worker: RemoteWorker, name: str, kwargs: dict[str, Any]) -> None:
        wid = worker.wid
        if name == "logstart":
            announced = next((s for s in worker.slots if s.announced and s.task.nodeid == kwargs["nodeid"]), None)
            if announced is not None:
                announced.announced = False  # replayed when it started
                return
            slot = next((s for s in worker.slots if not s.started), None)
            if slot is not None:
                slot.started = True
                slot.start = time.time()
            self._events.append(("logstart", {"nodeid": kwargs["nodeid"], "location": tuple(kwargs["location"]), "worker": wid}))
        elif name == "logreport":
            if "compact" in kwargs:  # a plain passed phase: rebuilt from the controller's item
                report = self._compact.rebuild(kwargs["nodeid"], kwargs["compact"])
            else:
                report = self.config.hook.pytest_report_from_serializable(config=self.config, data=kwargs["data"])
            worker.reported.add(report.nodeid)
            self._events.append(("logreport", {"report": report, "worker": wid}))
        elif name == "result":
            slot = self._slot(worker, kwargs["index"], resolved=False)
            if slot is not None:
                worker.resolve(slot)
            elapsed = float(kwargs.get("elapsed", 0.0))
            mean = self._mean_duration
            self._mean_duration = elapsed if mean is None else 0.8 * mean + 0.2 * elapsed
            self._events.append(("result", {"index": kwargs["index"], "outcome": kwargs["outcome"], "worker": wid}))
        elif name == "done":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.drop(slot)
            self._events.append(("done", {**kwargs, "worker": wid, "crashed": False}))
            self._shutdown_idle()
        elif name == "warning":
            self._events.append(("warning", warning_event(kwargs)))
        elif name == "exit":
            self._events.append(("exit", {"message": str(kwargs.get("message", "")), "returncode": kwargs.get("returncode")}))
        elif name == "interrupt":
            self._events.append(("interrupt", {}))
        elif name == "missing":
            slot = self._slot(worker, kwargs["index"], resolved=False)
            if slot is not None:
                worker.drop(slot)
                self._fail_slot(worker, slot, "setup", f"worker {wid} did not collect {slot.task.nodeid!r}", ("", ""))

    # -- choices --------------------------------------------------------------

    def _choose_worker(self, task: ItemTask, ready: list[RemoteWorker], depth: int) -> RemoteWorker | None:
        """The session for ``task`` among ``ready`` ones, or None if all are full.

        A task naming a live session (a retry) goes there whatever its load:
        that session holds the failed attempt's teardown until it gets its next
        task.  Otherwise the least loaded session wins, and among equals the one
        that ran the task's module last (its module fixtures are set up).
        """
        if task.worker is not None:
            for worker in ready:
                if worker.wid == task.worker:
                    return worker
        candidates = [w for w in ready if w.load < depth]
        if not candidates:
            return None
        module = task.nodeid.split("::", 1)[0]
        return min(candidates, key=lambda w: (w.load, w.last_module != module))

    def _depth(self) -> int:
        """Tasks a ready session may hold."""
        raise NotImplementedError

    def _ready_depth(self) -> int:
        """Tasks a ready session may hold: :meth:`_depth`, but only the one it runs while another starts.

        Items handed to a session are never taken back.  Sessions become ready
        one by one (a replacement after a crash, a session on a busy host); if
        a ready one prefetched a batch meanwhile, it would queue long items
        behind each other while the next session, ready moments later, finds
        nothing left to take.  Holding one item each until every session that
        is starting has started keeps the rest in the backlog, for whichever
        session is free first; a round trip per item costs little for that
        short while.
        """
        if any(self._starting(worker) for worker in self._pool):
            return 1
        return self._depth()

    def _starting(self, worker: RemoteWorker) -> bool:
        """A session whose host task runs but which is not ready yet (one waiting for a thread is not)."""
        return not (worker.ready or worker.closing or worker.exited) and worker.address is not None

    def _free_prefetch(self) -> int:
        """Free prefetch capacity of live sessions (see :meth:`_ready_depth`) minus tasks not handed out yet."""
        depth = self._ready_depth()
        capacity = sum(max(0, depth - w.load) for w in self._pool if not w.closing)
        return max(0, capacity - len(self._backlog))

    def _ready_workers(self) -> list[RemoteWorker]:
        """Sessions that take tasks now."""
        return [w for w in self._pool if w.ready and not w.closing and not w.exited]

    @staticmethod
    def _hand_out(worker: RemoteWorker, task: ItemTask, batches: Batches) -> None:
        """Give ``task`` (off the backlog already) to ``worker``, in the batch sent to it this round."""
        worker.assign(task)
        worker.last_module = task.nodeid.split("::", 1)[0]
        windex = worker.index_map[task.index] if worker.index_map is not None else task.index
        batches.setdefault(worker.wid, (worker, []))[1].append((task.index, windex, task.nodeid, task.timeout))

    def _shutdown_idle(self) -> None:
        """Once finishing, tell sessions with nothing left to run to wind down."""
        if not self._finishing or self._backlog:
            return
        for worker in self._pool:
            if not worker.closing and worker.load == 0:
                worker.closing = True
                worker.send(["shutdown"])

    def _check_finished(self) -> None:
        if self._finishing and not self._backlog and not self._finished and all(w.bye for w in self._pool):
            self._finished = True

    # -- failures ---------------------------------------------------------

    def _fail_slot(self, worker: RemoteWorker, slot: Slot, when: str, message: str, captured: tuple[str, str]) -> None:
        """Turn an item that can no longer finish normally into failed events."""
        self._events += failed_item_events(self._session, slot.task, worker.wid, when, message, captured, slot.start,
                                           started=slot.started)

    def _end_undone(self, worker: RemoteWorker, slots: list[Slot]) -> None:
        """End items whose outcome was replayed but whose teardown and ``done`` died with their session."""
        for slot in slots:
            self._events.append(("done", {"index": slot.task.index, "worker": worker.wid,
                                          "start": slot.start or time.time(), "stop": time.time(), "crashed": True}))

    def _on_exit(self, worker: RemoteWorker) -> None:
        """Account for a session that ended (normally, crashed or stopped by a timeout)."""
        captured = worker.read_capture()
        self._close_worker(worker, kill=True)
        if worker in self._pool:
            self._pool.remove(worker)
        slots = list(worker.slots)
        worker.slots.clear()
        worker.load = 0
        if worker.fatal and not slots:
            self._fail(f"worker {worker.wid} failed: {worker.fatal}")
            return
        if not worker.ready and not worker.closing and not self._killed:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES or worker.collected is None:
                self._fail(f"worker {worker.wid} exited before it was ready ({exit_reason(worker.returncode)}):\n"
                           f"{worker.tail_text()}")
                return
        if not slots:
            self._after_exit(worker, crashed=False)
            return
        # The item it ran: the one its host names, else the one it started last.
        running = [s for s in slots if s.started and not s.result]
        crashed = next((s for s in running if s.task.index == worker.crashed_index), running[-1] if running else None)
        undone = [s for s in slots if s.result]
        if crashed is None and undone:  # it died between items or while ending: in a teardown
            crashed = undone.pop(0)
        if crashed is None and worker.lost and worker.ready:
            # The start of the item it ran may have died with its dask worker, unrelayed: as
            # pytest-xdist does, blame the first item it held (else a test that kills its worker
            # would be handed out again and again).
            crashed = next((s for s in slots if not s.started), None)
        self._end_undone(worker, undone)
        if crashed is not None:
            output = (f"{worker.fatal}\n" if worker.fatal else "") + bytes(worker.tail).decode("utf-8", "replace")
            message = crash_message(crashed.task.nodeid, worker.wid, worker.returncode, output, worker.timed_out,
                                    teardown=crashed.result)
            self._fail_slot(worker, crashed, "teardown" if crashed.result else "call", message, captured)
        # Items queued behind the crashed one never started: hand them out again.
        for slot in reversed([s for s in slots if not s.started and s is not crashed]):
            self._backlog.appendleft(slot.task)
        reason = "timeout" if worker.timed_out is not None else exit_reason(worker.returncode)
        self._events.append(("worker_lost", {"worker": worker.wid, "reason": reason}))
        self._after_exit(worker, crashed=True)

    def _close_worker(self, worker: RemoteWorker, kill: bool) -> None:
        if kill:
            self._kill(worker)
        worker.exited = True

    def _fail(self, message: str) -> None:
        """A fatal problem: report it and stop every session."""
        self._events.append(("error", {"message": message}))
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        self._finished = True


__all__ = ["Batches", "SessionPool"]
