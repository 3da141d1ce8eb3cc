"""The dask-worker side of the ``dask`` backend: the host task that runs one pytest session.

:func:`host_session` runs as one long task on a dask worker.  The session is
the hosted worker state of an engine
:class:`~executor.engine.backend.process.ProcessPool` of one worker, the same
state as the ``process`` backend's (:mod:`~pytest_executor.backends._hosted`):
each item is a call of :func:`~pytest_executor.backends._hosted.run_task`,
answered with the session's events.  The host relays between that session and
the controller through dask's own comms; nothing else crosses the network:

* **to the controller** (:class:`~pytest_executor.backends._dask_relay.Relay`):
  the session's collection, the start of each item, each call's answer
  (``events``), the session's own output, the growth of its capture files (so
  a test whose dask worker is killed still shows its output so far) and, last,
  how the session ended (``exit``);
* **from the controller**: the session's ``distributed.Queue``, read by this
  task's thread, which hands ``run``/``shutdown``/``stop`` to the host's event
  loop (a thread of its own, where the pool lives).

Items run one call at a time, in the order they came: a call queued in the
worker behind another (the pool's prefetch) would, if the worker died, be run
again by the pool in a fresh worker, that is, in a new session, while the
controller hands it out elsewhere.  The next call follows the answer through a
local socket, which costs far less than the trip to the controller the
controller's own prefetch hides.  A call's ``timeout`` is kept here, from the
moment the item starts: the pool stops the worker with SIGABRT (faulthandler
dumps its stack into the output relayed) and kills its group.  A crash or a
timeout ends the host task, whose ``exit`` names the item: the controller
reports it and replaces the session, as it would a lost dask worker.

Nothing is left behind: the host kills the session when the controller says
``stop``, when this task is no longer wanted (cancelled, the worker closing:
a watchdog looks every second) and when it ends; the pool's zygote dies with
the host's loop thread and its workers with it (``PR_SET_PDEATHSIG``, see
:mod:`executor._lifeline`), so a dask worker killed outright takes its session
along.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from functools import partial
from typing import Any, Callable

from executor._kill import kill_tree
from executor.engine.backend._spare import take_spare
from executor.engine.backend.process import ProcessPool
from executor.engine.job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError
from executor.engine.state import WorkerState

from pytest_executor.backends import _hosted
from pytest_executor.backends._dask_copy import copy_root, session_host
from pytest_executor.backends._dask_relay import CaptureFollower, Relay

_CAPTURE_POLL = 0.1
"""Seconds between looks at the session's capture files while it runs (their growth is the output so far)."""
_WATCHDOG = 1.0
"""Seconds between checks that this task is still wanted."""
_DROP_GRACE = 30.0
"""Seconds a session that said ``bye`` gets to end before it is killed."""
_WAKE_TRIES = 10
"""``end`` items put at most to wake the task's thread: more than dask's default ``allowed-failures`` re-runs."""
_ALIVE_STATES = ("executing", "long-running")
_KILLED = -int(signal.SIGKILL)



def host_session(spec: dict[str, Any]) -> int:
    """Dask task: run one pytest worker session here and relay it until it ends.

    Returns the session's exit code (negative: killed by that signal).
    """
    from distributed import Queue, get_client, get_worker

    worker = get_worker()
    relay = Relay(worker, spec["topic"], spec["wid"])
    root: str | None = None
    if spec["copy"] is not None:
        root = os.path.realpath(copy_root(worker, spec["copy"]))  # as the session's getcwd() will say
        if not os.path.isdir(root):
            relay.post("start", address=worker.address, error=(
                f"dask worker {worker.address} has no copy of the test tree at {root}: it gets one "
                "through its nanny (a nanny plugin); workers started with "
                "--no-nanny cannot take part"))
            relay.flush()
            return 70
    from pytest_executor import __version__

    if __version__ != spec["version"]:
        relay.post("start", address=worker.address, error=(
            f"dask worker {worker.address} has pytest-executor {__version__}, the controller "
            f"{spec['version']}: install the same version on every worker"))
        relay.flush()
        return 70
    key = worker.get_current_task()
    relay.post("start", address=worker.address)
    relay.flush()
    host = _Host({**spec, "dask_worker": worker.address}, root, relay, lambda: _wanted(worker, key))
    host.thread.start()
    queue: Any = None
    try:
        # The worker's client connects to the scheduler (a TLS handshake) while the session imports pytest.
        try:
            queue = Queue(spec["queue"], client=get_client())
        except Exception:
            if _wanted(worker, key):
                raise
            queue = None  # the run ended while this session started: its cluster is closing, nothing to say
        if queue is not None and host.attach(queue):
            _receive(queue, host.take)
    finally:
        host.released.set()
        host.take([["stop"]])  # no-op once the host ended
        host.thread.join()
        relay.post("exit", **host.ending)
        relay.flush()
        if queue is not None:
            with contextlib.suppress(Exception):
                queue.close()
    return int(host.ending["returncode"])


def _wanted(worker: Any, key: Any) -> bool:
    """Whether this task is still executing on a running worker (not cancelled, not closing)."""
    if getattr(worker.status, "name", "running") != "running":
        return False
    state = worker.state.tasks.get(key)
    return state is not None and state.state in _ALIVE_STATES


def _receive(queue: Any, take: Callable[[list[list[Any]]], None]) -> None:
    """Hand the controller's items to ``take`` until ``end``/``stop`` (or the queue fails)."""
    while True:
        try:
            items = queue.get()
        except Exception:  # the worker or the scheduler is going away
            return
        take(items)
        if any(item[0] in ("end", "stop") for item in items):
            return


def _wake_receiver(queue: Any, released: threading.Event) -> None:
    """Put ``end`` in the session's queue until :func:`_receive` has taken one (``released``).

    One is not always enough.  A host task that dask re-runs after its worker
    died shares its queue with the dead run, whose ``get`` the scheduler still
    serves: that stale get takes the first ``end``.  Left waiting, the re-run
    would hold its dask worker's thread, and every session queued behind it,
    for good.  (A timed ``get`` would end the wait too, but the scheduler logs
    each timeout as an error.)
    """
    for _ in range(_WAKE_TRIES):
        with contextlib.suppress(Exception):
            queue.put([["end"]], timeout=5)
        if released.wait(_WATCHDOG):
            return


def _noop(link: _hosted.EngineLink) -> None:
    """A call that only makes sure the session is up (it starts and collects first)."""


class _Host:
    """The session's pool and the relay, on an event loop of their own thread (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], root: str | None, relay: Relay, wanted: Callable[[], bool]) -> None:
        self.relay = relay
        self.wanted = wanted
        self.loop = asyncio.new_event_loop()
        self.state = WorkerState(host=partial(session_host, spec, root), name="pytest-session", max_workers=1,
                                 capture_output=True)
        self.pool: ProcessPool | None = None
        self.todo: deque[tuple[int, int, str, float | None]] = deque()
        self.shutting = False
        self.ready = False
        self.serving: asyncio.Task[None] | None = None
        self.ending: dict[str, Any] = {"returncode": _KILLED}
        """The ``exit`` item: ``returncode``, and ``index``/``timeout`` of the item a crash or timeout ended."""
        self.captures = CaptureFollower()
        self.collected = False
        self._done: asyncio.Future[None] | None = None
        self._flushing: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()
        self._queue: Any = None
        self._over = False
        self.released = threading.Event()
        """Set once the task's thread no longer waits on the session's queue."""
        self.thread = threading.Thread(target=self._run, name=f"pytest-executor-{spec['wid']}-host", daemon=True)

    # -- the task's thread ---------------------------------------------------------

    def attach(self, queue: Any) -> bool:
        """Keep the session's queue (the host puts ``end`` in it when it ends); False if it ended already."""
        with self._lock:
            self._queue = queue
            return not self._over

    def take(self, items: list[list[Any]]) -> None:
        """Thread-safe: obey the controller's items on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the host ended
            self.loop.call_soon_threadsafe(self._take, items)

    # -- the loop's thread -----------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._done = self.loop.create_future()  # before any item of the controller is taken
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self._stop_pool()
            self.captures.close()
            if self._flushing is not None:
                self._flushing.cancel()
            with contextlib.suppress(Exception):
                self.loop.close()
            with self._lock:
                self._over, queue = True, self._queue
            if queue is not None and not self.released.is_set():  # the task's thread waits on the queue
                _wake_receiver(queue, self.released)

    async def _main(self) -> None:
        assert self._done is not None
        self.pool = ProcessPool(1, self.loop, take_spare(), eager=True, on_output=self._on_output)
        ticker = self.loop.create_task(self._tick())
        warm = self.loop.create_task(self._warm())
        try:
            await self._done
        finally:
            for task in (ticker, warm, self.serving):
                if task is not None and not task.done():
                    task.cancel()

    def _stop_pool(self) -> None:
        """Kill what is left of the session (and what its tests started), stop the pool."""
        pool = self.pool
        if pool is None:
            return
        for pid in pool.pids:
            kill_tree(pid)
        with contextlib.suppress(Exception):
            pool.shutdown()
        tasks = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:  # the calls still waiting on the pool end (cancelled)
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait(tasks, timeout=5))

    def _end(self, returncode: int, **detail: Any) -> None:
        """The session is over (or must be): ``_main`` returns, the pool is stopped."""
        if self._done is not None and not self._done.done():
            self.ending = {"returncode": returncode, **detail}
            self._done.set_result(None)

    def post(self, kind: str, **payload: Any) -> None:
        """Queue an item for the controller; it goes with the others of its :data:`~._dask_relay.BATCH_SECONDS`."""
        self.relay.post(kind, **payload)
        due = self.relay.due()
        if due == 0.0:
            self._flush()
        elif self._flushing is None and due is not None:
            self._flushing = self.loop.call_later(due, self._flush)

    def _flush(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        self.relay.flush()

    def _on_output(self, _: int, data: bytes) -> None:
        self.post("out", data=data)

    def _take(self, items: list[list[Any]]) -> None:
        for item in items:
            kind = item[0]
            if kind == "run":
                self.todo.extend(tuple(task) for task in item[1])
            elif kind == "shutdown":
                self.shutting = True
            elif kind == "stop":
                self._end(_KILLED)
        self._kick()

    def _kick(self) -> None:
        if self.ready and (self.serving is None or self.serving.done()) and (self.todo or self.shutting):
            self.serving = self.loop.create_task(self._serve())

    async def _warm(self) -> None:
        assert self.pool is not None
        try:
            await self.pool.run(_noop, (), {}, state=self.state, on_worker=self._on_worker)
        except WorkerStateError as exc:
            cause = exc.__cause__
            self.post("fatal", message=f"the pytest session could not start: {cause or exc}")
            code = cause.exitcode if isinstance(cause, WorkerCrashedError) and cause.exitcode is not None else 1
            self._end(code)
        except WorkerCrashedError as exc:
            self._end(exc.exitcode if exc.exitcode is not None else _KILLED)
        except Exception as exc:  # noqa: BLE001 - the controller must hear of every failure
            self.post("fatal", message=f"the pytest session could not start: {exc!r}")
            self._end(70)
        else:
            self.ready = True
            self._kick()

    def _on_worker(self, worker: Any) -> None:
        """The session serves: tell the controller what it collected, follow its capture files."""
        if not self.collected:
            self.collected = True
            info = worker.infos.get(self.state.key) or {}
            if sys.platform.startswith("linux"):
                self.captures.open(int(info.get("pid", worker.pid)), list(info.get("capture_fds", [])))
            self.post("collected", **info)

    async def _serve(self) -> None:
        """Run the items queued, one call at a time; then the last call if the controller said ``shutdown``."""
        while self.todo:
            task = self.todo.popleft()
            try:
                events = await self._run_one(task)
            except (WorkerCrashedError, WorkerTimeoutError) as exc:
                timeout = task[3] if isinstance(exc, WorkerTimeoutError) else None
                self._end(exc.exitcode if exc.exitcode is not None else _KILLED, index=task[0], timeout=timeout)
                return
            except Exception as exc:  # noqa: BLE001 - the controller must hear of every failure
                self.post("fatal", message=f"running {task[2]} on the session's pool failed: {exc!r}")
                self._end(70)
                return
            self.post("events", items=events)
        if self.shutting:
            await self._shut_down()

    async def _run_one(self, task: tuple[int, int, str, float | None]) -> Any:
        assert self.pool is not None
        loop, current = self.loop, asyncio.current_task()
        timer: list[asyncio.TimerHandle] = []
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            if current is not None:
                current.cancel()

        def on_start() -> None:
            self.post("started", index=task[0])
            if task[3]:
                timer.append(loop.call_later(task[3], expire))

        try:
            return await self.pool.run(_hosted.run_task, (task,), {}, state=self.state, on_start=on_start,
                                       timed_out=lambda: bool(timed_out))
        finally:
            for handle in timer:
                handle.cancel()

    async def _shut_down(self) -> None:
        """The session's last call (its last teardown), ``bye``, then let it end."""
        assert self.pool is not None
        try:
            events = await self.pool.run(_hosted.shut_down, (), {}, state=self.state)
        except (WorkerCrashedError, WorkerTimeoutError) as exc:
            self._end(exc.exitcode if exc.exitcode is not None else _KILLED)  # no bye: a crash in the teardown
            return
        self.post("events", items=events)
        self.post("bye")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.drop_state(self.state), _DROP_GRACE)
        self._end(0)

    async def _tick(self) -> None:
        """Follow the capture files; end the session once this task is no longer wanted."""
        check = time.monotonic() + _WATCHDOG
        while True:
            await asyncio.sleep(_CAPTURE_POLL if self.captures.fds else _WATCHDOG)
            self.captures.poll(self.post)
            if time.monotonic() >= check:
                check = time.monotonic() + _WATCHDOG
                if not self.wanted():
                    self._end(_KILLED)


__all__ = ["host_session"]
