"""The ``process`` backend on the engine's process pool: each item is a job for a hosted pytest session.

The workers are those of an :class:`executor.engine.backend.process.ProcessPool`
(forked by its zygote, itself forked from the controller before it loads its
conftests where possible: :meth:`ProcessRunner.prefork`).  Each holds a pytest
session set up as a hosted :class:`executor.engine.WorkerState`
(:mod:`._hosted`); an item is a call routed to a worker holding that state,
preferring the worker that ran its module last (its module fixtures are set up)
or, for a retry, the worker that holds the failed attempt's teardown.  The pool
prefetches as many items per worker as their mean duration warrants
(:meth:`ProcessRunner._depth`).

A call's answer carries the session's events (:mod:`._runner`); a
:class:`~executor.engine.job.utils.WorkerCrashedError` becomes the failed report
of the item (worker output, captured output, exit code or signal); a timeout
stops the worker with SIGABRT (its stack dump is in the report) then kills its
group (:meth:`ProcessPool.abort`); the pool replaces lost workers.  The pool's loop runs
on a thread while the controller collects (the workers the cores allow start meanwhile:
:meth:`ProcessRunner._sessions_at_start`), then on the controller's
while it waits for answers (:mod:`._pool_loop`); what the loop posts becomes events.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import time
from functools import partial
from pathlib import Path
from typing import Any, Final

import pytest

from executor._kill import kill_tree
from executor.engine import WorkerState
from executor.engine.backend.process import ProcessPool
from executor.engine.job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError

from pytest_executor.backends import _hosted
from pytest_executor.backends._compact import CompactReports
from pytest_executor.backends._runner import Event, ItemTask, collection_mismatch, warning_event
from pytest_executor.backends._failed_item import crash_message, exit_reason, failed_item_events, item_location
from pytest_executor.backends._failed_item import WorkerCaptures
from pytest_executor.backends._invocation import drop_basetemp, make_basetemp, split_invocation_args
from pytest_executor.backends._pool_loop import PoolLoop
from pytest_executor.config._parse import usable_cpu_count

_START_NOTICE: Final = 0.05
"""Seconds an item runs before the controller hears it started (a shorter one is first heard of with its answer)."""
_REAP_GRACE: Final = 30.0
"""Seconds the sessions get to end (after their last teardown) at cleanup before they are killed."""


class ProcessRunner:
    """``--executor-backend=process``: N hosted pytest sessions on the engine's warm process pool."""

    name = "process"
    defers_teardown = True
    worker_env: dict[str, str] = {}
    """Extra environment of every worker session (the ``forked`` backend turns on item forking with it)."""
    worker_prefix = "w"
    deadline_grace = 0.0
    """Seconds past an item's timeout before its worker is stopped (a forked worker times out its child itself)."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._session: pytest.Session | None = None
        self._compact = CompactReports(None)
        self._spare: Any = None
        self._pool_loop: PoolLoop | None = None
        self._pool: ProcessPool | None = None
        self._state: WorkerState | None = None
        self._backlog: list[ItemTask] = []
        self._in_flight: dict[int, ItemTask] = {}  # index -> task whose outcome is not known yet
        self._exclusive: int | None = None
        self._mean: float | None = None
        self._controller_ids: list[str] | None = None
        self._verified: set[int] = set()
        self._captures = WorkerCaptures()
        self._finishing = False
        self._closing: set[int] | None = None  # workers whose last teardown is awaited
        self._finished = False
        self._killed = False
        self._basetemp: Path | None = None
        self._own_basetemp: str | None = None
        self._ready: set[int] = set()  # workers whose session serves
        self._started: dict[int, bool] = {}  # index -> its logstart was replayed (True: the worker's is still due)
        self._starts: dict[int, tuple[str, tuple[Any, ...]]] = {}  # worker -> nodeid, location of its last logstart
        self._undone: dict[int, set[int]] = {}  # worker -> items whose teardown waits for its next task

    # -- start ------------------------------------------------------------

    def prefork(self) -> bool:
        """Fork the pool's zygote now, while the controller is single-threaded (workers inherit its imports).

        Returns False (the zygote never returns here).
        """
        from executor.engine.backend.process import can_fork_zygote, fork_zygote

        if can_fork_zygote():
            self._spare = fork_zygote()
        return False

    def start(self, session: pytest.Session) -> None:
        """Start the pool's loop and the workers' sessions (idempotent)."""
        if self._session is not None:
            return
        self._session = session
        self._compact = CompactReports(session)
        forward = self.config.getoption("capture", default="fd") in ("no", "tee-sys")
        options, positionals = split_invocation_args(self.config)
        self._basetemp, self._own_basetemp = make_basetemp(self.config)
        host = partial(_hosted.host_session, [*drop_basetemp(options), *positionals], str(self._basetemp),
                       self.worker_env, self.worker_prefix, compact_reports=True)
        self._state = WorkerState(host=host, name="pytest-session", max_workers=self.workers,
                                  capture_output=not forward)
        self._start_pool()
        for _ in range(self._sessions_at_start()):  # the pool forks the others as the first tasks come
            self._call_soon(self._warm)

    def _sessions_at_start(self) -> int:
        """How many sessions start collecting with the controller; the pool starts the others for the first tests.

        The controller's own collection needs a core: sessions beyond the
        cores left would share them with it and delay the first test (2,000
        trivial tests, 2 workers on 2 cores: first result 1.6 → 1.2 s).  On a
        machine with cores to spare, every session starts at once.
        """
        return min(self.workers, max(1, usable_cpu_count() - 1))

    def _start_pool(self) -> None:
        """The engine's pool, on a loop of its own thread until the tests run (:mod:`._pool_loop`);
        stopped at config cleanup (or exit)."""
        self._pool_loop = PoolLoop()
        self._pool = ProcessPool(self.workers, self._pool_loop.loop, self._spare, prefetch=0, eager=True)
        self._spare = None
        self.config.add_cleanup(self.close)
        atexit.register(self.kill)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        assert self._pool_loop is not None
        self._pool_loop.call_soon(callback, *args)

    def _post(self, item: tuple[Any, ...]) -> None:
        """Hand the controller what a callback on the pool's loop has to say (see :meth:`_on_post`)."""
        assert self._pool_loop is not None
        self._pool_loop.post(item)

    def _warm(self) -> None:
        asyncio.ensure_future(self._warm_one())

    async def _warm_one(self) -> None:
        assert self._pool is not None and self._state is not None
        ran_on: list[Any] = []
        try:
            await self._pool.run(_noop, (), {}, state=self._state, on_worker=ran_on.append)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - the run must hear of every failure
            self._post(("failed", None, exc, _output_of(ran_on)))
        else:
            self._on_worker(ran_on[-1])

    def _on_worker(self, worker: Any) -> None:
        """A worker got a call: it serves (its session collected); the controller checks what once."""
        assert self._state is not None
        if worker.wid not in self._ready:
            self._ready.add(worker.wid)
            info = worker.infos.get(self._state.key)
            self._captures.open(worker.wid, info)  # now, while the worker is alive: see WorkerCaptures
            self._post(("ready", worker.wid, info))

    # -- Runner protocol --------------------------------------------------

    def free_slots(self) -> int:
        """Room for more tasks: ``depth`` per worker, minus what is handed out or waiting."""
        if self._killed or self._finished or self._finishing or self._exclusive is not None:
            return 0
        if any(task.exclusive for task in self._backlog):
            return 0
        return max(0, self.workers * self._depth() - len(self._in_flight) - len(self._backlog))

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; it goes to the pool with the others of this turn (:meth:`next_events`)."""
        self._backlog.append(task)

    def _dispatch(self) -> bool:
        """Hand the backlog to the pool's loop; whether there was any."""
        if self._killed or self._finished:
            return False
        tasks: list[ItemTask] = []
        while self._backlog and self._exclusive is None:
            task = self._backlog[0]
            if task.exclusive and (self._in_flight or tasks):
                break  # an exclusive item waits until every worker is idle
            self._backlog.pop(0)
            self._in_flight[task.index] = task
            tasks.append(task)
            if task.exclusive:
                self._exclusive = task.index
        if tasks:
            assert self._pool is not None
            self._pool.prefetch = self._depth() - 1
            self._call_soon(self._start_tasks, tasks)
        return bool(tasks)

    def _start_tasks(self, tasks: list[ItemTask]) -> None:
        for task in tasks:
            asyncio.ensure_future(self._run(task))

    async def _run(self, task: ItemTask) -> None:
        """Run one task on the pool (on the loop thread); post its answer or its failure."""
        assert self._pool is not None and self._pool_loop is not None
        loop = self._pool_loop.loop
        current = asyncio.current_task()
        timer: list[asyncio.TimerHandle] = []
        timed_out: list[bool] = []
        started: list[float] = []

        def on_start() -> None:
            started.append(time.time())
            # Shown running if it still runs a moment later, not once answered.  A short item's answer comes
            # first, with the worker's logstart: no notice to handle, no item location to work out.
            timer.append(loop.call_later(_START_NOTICE, self._post, ("started", task, ran_on[-1].wid)))
            if task.timeout:
                timer.append(loop.call_later(task.timeout + self.deadline_grace, expire))

        def expire() -> None:
            timed_out.append(True)
            if current is not None:
                current.cancel()

        ran_on: list[Any] = []

        def on_worker(worker: Any) -> None:
            ran_on.append(worker)
            self._on_worker(worker)

        module = task.nodeid.split("::", 1)[0]
        try:
            events = await self._pool.run(
                _hosted.run_task, ((task.index, -1, task.nodeid, task.timeout),), {}, state=self._state,
                worker=_hosted.worker_of_label(task.worker, self.worker_prefix), affinity=module, on_worker=on_worker,
                timed_out=lambda: bool(timed_out), on_start=on_start)
        except (WorkerCrashedError, WorkerTimeoutError) as exc:
            self._post(("crashed", task, exc, started[0] if started else 0.0))
        except WorkerStateError as exc:
            self._post(("failed", task, exc, _output_of(ran_on)))
        except BaseException as exc:  # noqa: BLE001 - the run must hear of every failure
            if not isinstance(exc, asyncio.CancelledError):
                self._post(("failed", task, exc, ""))
        else:
            wid = ran_on[-1].wid if ran_on else 0
            self._post(("answer", task, wid, events))
        finally:
            for handle in timer:
                handle.cancel()

    def next_events(self, timeout: float | None) -> list[Event]:
        """Send the tasks submitted since the last call (one round of the pool's loop for all),
        wait up to ``timeout`` seconds for what the pool posted; return the events it makes."""
        events: list[Event] = []
        pool_loop = self._pool_loop
        assert pool_loop is not None
        pool_loop.take_over()  # the tests run: the controller runs the pool's loop while it waits
        sent = self._dispatch()
        end = None if timeout is None else time.monotonic() + timeout
        while not events:
            if self._killed or self._finished:
                return [("finished", {})]
            wait = None if end is None else max(0.0, end - time.monotonic())
            post = pool_loop.next_post(wait)
            if post is None:
                break
            while post is not None:
                self._on_post(post, events)
                post = pool_loop.next_post(0.0) if not self._killed else None
            sent = self._dispatch() or sent
        if sent:
            pool_loop.turn()  # the tasks just dispatched go out before the controller replays what came
        return events

    def finish(self) -> None:
        """No more tasks: each session tears down what is left (a last call) and ends."""
        self._finishing = True
        self._maybe_close_sessions()

    def _maybe_close_sessions(self) -> None:
        if not self._finishing or self._closing is not None or self._backlog or self._in_flight:
            return
        self._closing = set()
        self._call_soon(self._close_sessions)

    def _close_sessions(self) -> None:
        assert self._pool is not None and self._state is not None
        holders = list(self._pool.state_info(self._state))
        self._post(("closing", holders))
        for wid in holders:
            asyncio.ensure_future(self._close_one(wid))

    async def _close_one(self, wid: int) -> None:
        assert self._pool is not None
        try:
            events = await self._pool.run(_hosted.shut_down, (), {}, state=self._state, worker=wid)
        except BaseException:  # noqa: BLE001 - a session lost while ending: nothing left to report
            events = []
        self._post(("closed", wid, events))

    def close(self) -> None:
        """Config cleanup: let the sessions end (up to a grace period), then stop the pool."""
        if self._killed or self._pool_loop is None:
            return
        with contextlib.suppress(Exception):
            self._pool_loop.run(self._drop(), _REAP_GRACE)
        self.kill()

    async def _drop(self) -> None:
        assert self._pool is not None and self._state is not None
        await self._pool.drop_state(self._state)

    def kill(self) -> None:
        """Kill every worker (and what its tests started) now, stop the pool."""
        if self._killed:
            return
        self._killed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.kill)
        pool_loop, pool = self._pool_loop, self._pool
        if pool_loop is not None and pool is not None:
            for pid in pool.pids:
                kill_tree(pid)
            with contextlib.suppress(Exception):
                pool_loop.shut_down(pool, 10)
            pool_loop.close()
        elif self._spare is not None:
            self._spare.close()
        self._captures.close()
        if self._own_basetemp is not None:
            import shutil

            shutil.rmtree(self._own_basetemp, ignore_errors=True)

    # -- posts from the loop ------------------------------------------------

    def _on_post(self, post: tuple[Any, ...], events: list[Event]) -> None:
        kind = post[0]
        if kind == "ready":
            self._verify(post[1], post[2], events)
        elif kind == "started":
            task, label = post[1], self._label(post[2])
            self._started[task.index] = True
            events.append(("logstart", {"nodeid": task.nodeid, "location": item_location(self._session, task),
                                        "worker": label}))
        elif kind == "answer":
            _, task, wid, items = post
            for name, kwargs in items:
                self._on_event(wid, task, name, kwargs, events)
        elif kind == "crashed":
            self._on_crash(post[1], post[2], post[3], events)
        elif kind == "failed":
            self._on_failure(post[1], post[2], post[3], events)
        elif kind == "closing":
            assert self._closing is not None
            self._closing.update(post[1])
            if not self._closing:
                self._finished = True
        elif kind == "closed":
            for name, kwargs in post[2]:
                self._on_event(post[1], None, name, kwargs, events)
            self._end_undone(post[1], events)
            if self._closing is not None:
                self._closing.discard(post[1])
                if not self._closing:
                    self._finished = True

    def _verify(self, wid: int, info: Any, events: list[Event]) -> None:
        """Check once that a worker collected what the controller did; keep its capture files."""
        if wid in self._verified or not isinstance(info, dict):
            return
        self._verified.add(wid)
        if self._controller_ids is None and self._session is not None:
            self._controller_ids = [item.nodeid for item in self._session.items]
        ids = list(info.get("ids", []))
        known = set(ids) | set(info.get("deselected", []))
        message = collection_mismatch(self._label(wid), self._controller_ids or [], ids, known)
        if message is not None:
            self._fail(message, events)

    def _on_event(self, wid: int, task: ItemTask | None, name: str, kwargs: dict[str, Any],
                  events: list[Event]) -> None:
        label = self._label(wid)
        if name == "logstart":
            location = tuple(kwargs["location"])
            self._starts[wid] = (kwargs["nodeid"], location)
            if task is not None and self._started.get(task.index) and kwargs["nodeid"] == task.nodeid:
                self._started[task.index] = False  # replayed when it started
                return
            events.append(("logstart", {"nodeid": kwargs["nodeid"], "location": location, "worker": label}))
        elif name == "logreport":
            report = (self._compact.rebuild(kwargs["nodeid"], kwargs["compact"], self._starts.get(wid))
                      if "compact" in kwargs
                      else self.config.hook.pytest_report_from_serializable(config=self.config, data=kwargs["data"]))
            events.append(("logreport", {"report": report, "worker": label}))
        elif name == "result":
            index = kwargs["index"]
            self._in_flight.pop(index, None)
            if self._exclusive == index:
                self._exclusive = None
            elapsed = float(kwargs.get("elapsed", 0.0))
            self._mean = elapsed if self._mean is None else 0.8 * self._mean + 0.2 * elapsed
            events.append(("result", {"index": index, "outcome": kwargs["outcome"], "worker": label}))
            self._undone.setdefault(wid, set()).add(index)
            self._maybe_close_sessions()
        elif name == "done":
            self._started.pop(kwargs["index"], None)
            self._undone.get(wid, set()).discard(kwargs["index"])
            events.append(("done", {**kwargs, "worker": label, "crashed": False}))
        elif name == "warning":
            events.append(("warning", warning_event(kwargs)))
        elif name == "exit":
            events.append(("exit", {"message": str(kwargs.get("message", "")), "returncode": kwargs.get("returncode")}))
        elif name == "interrupt":
            events.append(("interrupt", {}))
        elif name == "missing" and task is not None:
            self._fail_task(task, label, "setup", f"worker {label} did not collect {task.nodeid!r}", ("", ""), 0.0,
                            events)

    def _on_crash(self, task: ItemTask, exc: WorkerCrashedError | WorkerTimeoutError, start: float,
                  events: list[Event]) -> None:
        label = self._label(exc.worker_id)
        timeout = (task.timeout or 0.0) if isinstance(exc, WorkerTimeoutError) else None
        message = crash_message(task.nodeid, label, exc.exitcode, exc.output or "", timeout)
        lost = "timeout" if timeout is not None else exit_reason(exc.exitcode)
        self._end_undone(exc.worker_id or 0, events)
        self._fail_task(task, label, "call", message, self._captures.take(exc.worker_id), start, events)
        events.append(("worker_lost", {"worker": label, "reason": lost}))
        self._ready.discard(exc.worker_id or 0)
        if not self._finishing:
            self._call_soon(self._warm)  # the pool forks a replacement: its session starts now

    def _end_undone(self, wid: int, events: list[Event]) -> None:
        """End the items a lost worker still owed a ``done`` (their teardown events died with it)."""
        for index in sorted(self._undone.pop(wid, ())):
            self._started.pop(index, None)
            events.append(("done", {"index": index, "worker": self._label(wid), "stop": time.time(), "crashed": True}))

    def _on_failure(self, task: ItemTask | None, exc: BaseException, output: str, events: list[Event]) -> None:
        detail = f"{exc.__cause__ or exc}" + (f"\n{output}" if output.strip() else "")
        if isinstance(exc, WorkerStateError) or task is None:
            self._fail(f"a worker could not start its pytest session: {detail}", events)
        else:
            self._fail(f"running {task.nodeid} on the process pool failed: {exc!r}", events)

    def _fail(self, message: str, events: list[Event]) -> None:
        """A fatal problem: report it and stop every worker."""
        events.append(("error", {"message": message}))
        self.kill()
        self._finished = True

    def _fail_task(self, task: ItemTask, label: str, when: str, message: str, captured: tuple[str, str],
                   start: float, events: list[Event]) -> None:
        """Turn an item that can no longer finish normally into failed events."""
        self._in_flight.pop(task.index, None)
        if self._exclusive == task.index:
            self._exclusive = None
        started = self._started.pop(task.index, None) is not None
        events += failed_item_events(self._session, task, label, when, message, captured, start, started=started)
        self._maybe_close_sessions()

    def _label(self, wid: int | None) -> str:
        return _hosted.worker_label(wid, self.worker_prefix)

    # -- sizing -----------------------------------------------------------

    def _depth(self) -> int:
        """Items a worker may hold: enough to hide the round trip, few enough to balance the tail.

        One while a worker is still starting (a worker ready moments later
        must find items left), and while items are long or of unknown length.
        """
        if len(self._ready) < self.workers:
            return 1
        mean = self._mean
        if mean is None or mean >= 0.05:
            return 1
        return 2 if mean >= 0.005 else 8


def _noop(link: _hosted.EngineLink) -> None:
    """A call that only makes sure a worker's session is up (it starts and collects first)."""


def _output_of(workers: list[Any]) -> str:
    return workers[-1].output_text() if workers else ""


__all__ = ["ProcessRunner"]
