"""What a :class:`~pytest_executor.backends._pipe_pool.WorkerPool` makes of its workers' messages and ends.

:class:`PoolEvents` (a base of ``WorkerPool``) turns the messages of worker
sessions into the runner events of :mod:`pytest_executor.backends._runner`,
chooses which worker gets a task (prefetch depth, module affinity, retries on
the worker that holds the teardown) and turns a worker that died or timed
out into the failed reports of the item it ran.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from executor._kill import kill_pid, signal_group

from pytest_executor.backends._failed_item import exit_reason, failed_item_events, item_report, open_capture_files
from pytest_executor.backends._pipe_worker import (
    Batches,
    Slot,
    WorkerProcess,
    kill_process_tree,
)
from pytest_executor.backends._runner import Event, ItemTask, warning_event

_MAX_START_FAILURES = 3


class PoolEvents:
    """Messages, dispatch choices and failures of a :class:`~pytest_executor.backends._pipe_pool.WorkerPool`."""

    config: pytest.Config
    workers: int
    _session: pytest.Session | None
    _selector: selectors.BaseSelector
    _pool: list[WorkerProcess]
    _backlog: deque[ItemTask]
    _events: list[Event]
    _controller_ids: list[str] | None
    _start_failures: int
    _finishing: bool
    _finished: bool
    _killed: bool
    _mean_duration: float | None
    _basetemp: Path | None

    def _shutdown_idle(self) -> None:
        raise NotImplementedError

    def _check_finished(self) -> None:
        raise NotImplementedError

    # -- messages ---------------------------------------------------------

    def _on_message(self, worker: WorkerProcess, name: str, kwargs: dict[str, Any]) -> None:
        if name == "events":
            for event_name, event_kwargs in kwargs["items"]:
                self._on_event(worker, event_name, event_kwargs)
        elif name == "collected":
            worker.collected = kwargs
            self._open_capture_files(worker, kwargs.get("pid"), kwargs.get("capture_fds", []))
            self._verify(worker)
        elif name == "fatal":
            worker.fatal = str(kwargs.get("message", ""))
        elif name == "bye":
            worker.bye = True

    def _open_capture_files(self, worker: WorkerProcess, pid: Any, fds: list[int]) -> None:
        """Hold the worker's capture files open so a crashed test's output survives it (Linux)."""
        worker.capture_fds += open_capture_files(pid, fds)

    def _learn_controller_ids(self) -> None:
        if self._controller_ids is None and self._session is not None:
            self._controller_ids = [item.nodeid for item in self._session.items]
            for worker in self._pool:
                if worker.collected is not None and not worker.ready:
                    self._verify(worker)

    def _verify(self, worker: WorkerProcess) -> None:
        """Check a worker collected what the controller did; map indices when orders differ."""
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
        for i, nodeid in enumerate(self._controller_ids):
            if nodeid not in position:
                theirs = ids[i] if i < len(ids) else "<nothing>"
                self._fail(
                    f"collection mismatch: worker {worker.wid} did not collect what the controller did; "
                    f"first differing id at position {i}: controller has {nodeid!r}, worker has {theirs!r} "
                    f"(controller collected {len(self._controller_ids)} items, worker {len(ids)})"
                )
                return
        worker.index_map = [position[nodeid] for nodeid in self._controller_ids]
        worker.ready = True

    def _slot(self, worker: WorkerProcess, index: int) -> Slot | None:
        for slot in worker.slots:
            if slot.task.index == index:
                return slot
        return None

    def _on_event(self, worker: WorkerProcess, name: str, kwargs: dict[str, Any]) -> None:
        wid = worker.wid
        if name == "logstart":
            slot = next((s for s in worker.slots if not s.started), None)
            if slot is not None:
                slot.started = True
                slot.start = time.time()
                if slot.task.timeout:
                    worker.deadline = time.monotonic() + slot.task.timeout
            self._events.append(("logstart", {"nodeid": kwargs["nodeid"], "location": tuple(kwargs["location"]), "worker": wid}))
        elif name == "logreport":
            report = self.config.hook.pytest_report_from_serializable(config=self.config, data=kwargs["data"])
            self._events.append(("logreport", {"report": report, "worker": wid}))
        elif name == "result":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.resolve(slot)
            worker.deadline = None
            self._record_duration(float(kwargs.get("elapsed", 0.0)))
            self._on_result(kwargs["index"])
            self._events.append(("result", {"index": kwargs["index"], "outcome": kwargs["outcome"], "worker": wid}))
        elif name == "done":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.drop(slot)
            self._events.append(("done", {**kwargs, "worker": wid, "crashed": False}))
            self._after_done(worker)
        elif name == "warning":
            self._events.append(("warning", warning_event(kwargs)))
        elif name == "exit":
            self._events.append(("exit", {"message": str(kwargs.get("message", "")), "returncode": kwargs.get("returncode")}))
        elif name == "interrupt":
            self._events.append(("interrupt", {}))
        elif name == "missing":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.drop(slot)
                message = f"worker {wid} did not collect {slot.task.nodeid!r}"
                self._fail_slot(worker, slot, "setup", message, ("", ""))

    def _choose_worker(self, task: ItemTask, ready: list[WorkerProcess], depth: int) -> WorkerProcess | None:
        """The worker for ``task`` among ``ready`` ones, or None if all are full.

        A task naming a live worker (a retry) goes there whatever its load:
        that worker holds the failed attempt's teardown until it gets its next
        task.  Otherwise the least loaded worker wins, and among equals the one
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

    def _record_duration(self, elapsed: float) -> None:
        """Keep a moving mean of item durations (setup + call) for :meth:`_depth`."""
        mean = self._mean_duration
        self._mean_duration = elapsed if mean is None else 0.8 * mean + 0.2 * elapsed

    def _ready_depth(self) -> int:
        """Tasks a ready worker may hold: :meth:`_depth`, but only the one it runs while another starts.

        Items handed to a worker are never taken back.  Workers become ready
        one by one (a replacement after a crash, a session on a busy host); if
        a ready one prefetched a batch meanwhile, it would queue long items
        behind each other while the next worker, ready moments later, finds
        nothing left to take.  Holding one item each until every worker that
        is starting has started keeps the rest in the backlog, for whichever
        worker is free first; a round trip per item costs little for that
        short while.
        """
        if any(self._starting(worker) for worker in self._pool):
            return 1
        return self._depth()

    def _starting(self, worker: WorkerProcess) -> bool:
        """Whether ``worker`` will be ready soon (it is alive and collecting)."""
        return not (worker.ready or worker.closing or worker.exited)

    def _free_prefetch(self) -> int:
        """Free prefetch capacity of live workers (see :meth:`_ready_depth`) minus tasks not handed out yet."""
        depth = self._ready_depth()
        capacity = sum(max(0, depth - w.load) for w in self._pool if not w.closing)
        return max(0, capacity - len(self._backlog))

    def _ready_workers(self) -> list[WorkerProcess]:
        """Workers that take tasks now."""
        return [w for w in self._pool if w.ready and not w.closing and not w.exited]

    def _hand_out(self, worker: WorkerProcess, task: ItemTask, batches: Batches) -> None:
        """Give ``task`` (off the backlog already) to ``worker``, in the batch :meth:`_send_batches` sends it."""
        worker.assign(task)
        worker.last_module = task.nodeid.split("::", 1)[0]
        windex = worker.index_map[task.index] if worker.index_map is not None else task.index
        batches.setdefault(worker.wid, (worker, []))[1].append((task.index, windex, task.nodeid, task.timeout))

    @staticmethod
    def _send_batches(batches: Batches) -> None:
        """One ``run`` message per worker, with every task handed to it in this round."""
        for worker, tasks in batches.values():
            worker.send("run", tasks=tasks)

    def _depth(self) -> int:
        """Tasks a worker may hold: enough to hide the round trip, few enough to balance the tail."""
        mean = self._mean_duration
        if mean is None or mean >= 0.05:
            # Unknown or long items: never queue one behind another, a worker that
            # is still starting (or about to be idle) may take it.
            return 1
        if mean >= 0.005:
            return 2
        return 8

    def _on_result(self, index: int) -> None:
        """Hook for subclasses (exclusive tasks)."""

    def _after_done(self, worker: WorkerProcess) -> None:
        self._shutdown_idle()

    # -- failures ---------------------------------------------------------

    def _make_report(self, task: ItemTask, when: str, outcome: str, longrepr: str | None,
                     sections: list[tuple[str, str]], start: float) -> pytest.TestReport:
        """A report of ``task``'s item made by the controller (see :func:`~._failed_item.item_report`)."""
        return item_report(self._session, task, when, outcome, longrepr, sections, start)

    def _fail_slot(self, worker: WorkerProcess, slot: Slot, when: str, message: str, captured: tuple[str, str]) -> None:
        """Turn an item that can no longer finish normally into failed events."""
        if when != "teardown":
            self._on_result(slot.task.index)
        self._events += failed_item_events(self._session, slot.task, worker.wid, when, message, captured, slot.start,
                                           started=slot.started)

    def _crash_message(self, worker: WorkerProcess, slot: Slot) -> tuple[str, str]:
        """(when, message) for the item a dead worker was running."""
        reason = exit_reason(worker.proc.returncode)
        tail = worker.tail_text()
        if worker.timed_out is not None:
            head = (
                f"Timeout: {slot.task.nodeid} did not finish within {worker.timed_out:g} s on worker "
                f"{worker.wid}; the worker was killed ({reason}) and replaced."
            )
            detail = "Stack of the worker when it was stopped" if "File" in tail else "Last output of the worker"
        else:
            where = "in the teardown of" if slot.result else "while running"
            head = f"worker {worker.wid} crashed {where} {slot.task.nodeid} ({reason})"
            head += "; the worker was replaced."
            detail = "Last output of the worker"
        if worker.fatal:
            tail = f"{worker.fatal}\n{tail}"
        message = head + (f"\n\n{detail}:\n{tail}" if tail.strip() else "")
        return ("teardown" if slot.result else "call"), message

    def _on_exit(self, worker: WorkerProcess) -> None:
        """Account for a worker that ended (normally, crashed or killed by a timeout)."""
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
                self._fail(
                    f"worker {worker.wid} exited before it was ready ({exit_reason(worker.proc.returncode)}):\n"
                    f"{worker.tail_text()}"
                )
                return
        if slots:
            first, rest = slots[0], slots[1:]
            when, message = self._crash_message(worker, first)
            self._fail_slot(worker, first, when, message, captured)
            # Items queued behind the crashed one never started: hand them out again.
            for slot in reversed(rest):
                self._backlog.appendleft(slot.task)
            reason = "timeout" if worker.timed_out is not None else exit_reason(worker.proc.returncode)
            self._events.append(("worker_lost", {"worker": worker.wid, "reason": reason}))
        self._after_exit(worker, crashed=bool(slots))

    def _after_exit(self, worker: WorkerProcess, crashed: bool) -> None:
        """Hook: replace the worker if more work may come."""

    def _kill(self, worker: WorkerProcess) -> None:
        """SIGKILL the worker and everything it started (overridden for remote workers)."""
        if worker.proc.returncode is None:
            kill_process_tree(worker.proc.pid)
            with contextlib.suppress(Exception):
                worker.proc.wait(timeout=5)
        else:
            # The leader is gone; grandchildren may still hold its process group.
            signal_group(worker.proc.pid, signal.SIGKILL)

    def _abort(self, worker: WorkerProcess) -> None:
        """SIGABRT the worker: faulthandler dumps every thread's stack, then it dies."""
        kill_pid(worker.proc.pid, signal.SIGABRT)

    def _close_worker(self, worker: WorkerProcess, kill: bool) -> None:
        if kill:
            self._kill(worker)
        worker.exited = True
        fds = {fd for fd in (worker.read_fd, worker.write_fd, worker.out_fd, worker.lifeline_fd, worker.pidfd) if fd is not None and fd >= 0}
        for fd in fds:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
        for fd in (*fds, *worker.capture_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.capture_fds = []
        worker.pidfd = None
        worker.read_fd = worker.write_fd = worker.out_fd = worker.lifeline_fd = -1

    def _fail(self, message: str) -> None:
        """A fatal problem: report it and stop every worker."""
        self._events.append(("error", {"message": message}))
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        self._finished = True

