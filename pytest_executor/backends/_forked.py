"""The worker side of the ``forked`` backend: each item's protocol in a child forked from the worker.

A worker started with :data:`~pytest_executor.backends._protocol.ENV_FORK_ITEMS`
registers an :class:`ItemForker` beside its
:class:`~pytest_executor.backends.worker.WorkerSession`.  The worker imports,
collects and fetches its tasks as a ``process`` worker does, but runs no test
itself: for each item it forks, the child runs the whole protocol (setup, call,
teardown of every fixture it uses, session-scoped ones included) with the
session's own code, sends its events to the worker through a pipe and ends
with ``os._exit``; the worker forwards them to the controller.  So the worker
never holds a fixture or any state of a test, and the next child starts from
the same clean, collected worker.

Whatever the child does, the worker goes on: a child that dies before it sent
the item's ``done`` (a segfault, ``os._exit``, SIGKILL, a timeout, which the
worker enforces itself) becomes a failed report with what the test wrote to
its captured output.  The child leads a process group of its own and the
worker is a child subreaper (see :mod:`executor._kill`), so what the test
started, detached or not, is killed once the child is gone.

Forking copies one thread only: a lock held by any other thread stays locked
forever in the child.  A worker that finds threads running after its collection
(a conftest or test module started some) therefore runs nothing and reports
:data:`FORK_UNSAFE`; the controller falls back to the ``subprocess`` backend.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, final

import pytest

from executor._kill import has_children, kill_own_descendants, signal_group
from executor._lifeline import LIFELINE_THREAD
from executor._pidfd import close_pidfd, open_pidfd
from executor.engine._lazy import load_lazy_exports
from pytest_executor.backends._failed_item import exit_reason
from pytest_executor.backends._fork_shared import SharedFixtures
from pytest_executor.backends._fork_stats import ForkStats
from pytest_executor.backends._protocol import (
    ChannelClosed,
    FrameDecoder,
    Message,
    encode,
    read_available,
    write_all,
)
from pytest_executor.config.options import get_option

if TYPE_CHECKING:
    from pytest_executor.backends.worker import Task, WorkerSession

FORK_UNSAFE = "forking is unsafe in the worker:"
"""Starts the ``fatal`` message of a worker that must not fork (the controller falls back on it)."""
_ABORT_GRACE = 2.0
"""Seconds a timed-out child gets to dump its stack after SIGABRT."""
_CHILD_FAILED = 70
"""Exit code of a child whose protocol raised (an internal error, not the test's)."""


_IDLE_THREADS = {("pytest_rerunfailures", "run_server")}
"""Threads known to hold no lock a child could need: (module, function) of their target.

pytest-rerunfailures starts a status server for pytest-xdist workers in every
session when xdist is installed; it only waits in ``accept()``, and no worker of
ours ever connects to it.
"""


def _is_idle(thread: threading.Thread) -> bool:
    if thread.name == LIFELINE_THREAD:
        return True
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__self__", None)
    module = getattr(type(owner), "__module__", None) if owner is not None else getattr(target, "__module__", None)
    return (module, getattr(target, "__name__", None)) in _IDLE_THREADS


def fork_unsafe_reason(when: str = "after collection") -> str | None:
    """Why this process must not fork a test child, or None when it may (``when``: for the message)."""
    if not hasattr(os, "fork"):
        return "os.fork is not available on this platform"
    main = threading.main_thread()
    others = sorted(t.name for t in threading.enumerate() if t is not main and not _is_idle(t))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return f"{len(others)} thread(s) running {when} ({shown})"
    return None


@final
class _PipeChannel:
    """The child's send-only :class:`~pytest_executor.backends._protocol.Channel` to its worker."""

    def __init__(self, write_fd: int) -> None:
        self._fd = write_fd
        self._held: list[Any] = []
        """A ``logstart`` not sent yet: it goes with the next events (one write, one wake-up less)."""

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one message to the worker (a batch of only ``logstart`` waits for the next one).

        The controller announces an item's start itself when it hands the item
        out, and the worker reports a child that dies before it sent anything,
        so a ``logstart`` alone is not worth a write.
        """
        if name == "events":
            items = kwargs["items"]
            if all(event == "logstart" for event, _ in items):
                self._held.extend(items)
                return
            if self._held:
                kwargs = {**kwargs, "items": [*self._held, *items]}
                self._held = []
        try:
            write_all(self._fd, encode(name, kwargs))
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def recv(self, timeout: float | None = None) -> Message:
        """A child never asks the controller for anything: its one item is all it runs."""
        raise ChannelClosed("a forked child has no channel to the controller")

    def close(self) -> None:
        """Close the pipe."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


@dataclass
class _Seen:
    """How far a child got, from the events it sent."""

    logstart: bool = False
    result: bool = False
    done: bool = False
    exit: tuple[str, int | None] | None = None
    interrupt: bool = False


@final
class ItemForker:
    """Runs each item of a worker session in a child forked from the worker (a pytest plugin)."""

    def __init__(self, session: WorkerSession) -> None:
        self._session = session
        self._config = session.config
        self._started = 0.0
        """When the current item's child was forked (``time.time()``)."""
        self._stats: ForkStats | None = None
        """CPU and page faults of the children and the worker, for benchmarks (see :mod:`._fork_stats`)."""
        self._shared: SharedFixtures | None = None
        """The session fixtures shared by the children (``--executor-fork-shared``), if any."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Refuse to fork with threads running; else prepare what every child shares."""
        self._refuse_if_unsafe("after collection")
        # Created once here: a child creating it would first wipe its siblings' temporary directories.
        factory = getattr(self._config, "_tmp_path_factory", None)
        if factory is not None:
            factory.getbasetemp()
        self._stats = ForkStats.from_env()
        names = get_option(self._config, "fork-shared")
        if names:
            # Set up now, before this worker takes a task: a fixture that starts a thread
            # makes forking unsafe, which the controller handles best before any test ran.
            self._shared = SharedFixtures(session, names)
            prepared = self._shared.prepare_all(session.items)
            if prepared:
                self._read_capture()  # their setup's output belongs to no test: dropped
                self._refuse_if_unsafe(f"after the shared fixture(s) {', '.join(prepared)} were set up")

    def collected_sent(self) -> None:
        """Once the controller has the collected ids: import what children would otherwise import each.

        A child that walks every module's names (freezegun does on each start:
        ``dir()``, then ``getattr`` of each) imports the engine's lazily exported
        modules, about 20 ms, and loses them with it; imported here, once, every
        child inherits them.  Done while the controller is likely still
        collecting, rather than on the way to the first fork.
        """
        with contextlib.suppress(ImportError):  # only a saving: a child would meet the same error, if it ever looked
            load_lazy_exports()

    def _refuse_if_unsafe(self, when: str) -> None:
        """Tell the controller, and end this session, if forking is unsafe (see :func:`fork_unsafe_reason`)."""
        reason = fork_unsafe_reason(when)
        if reason is not None:
            message = f"{FORK_UNSAFE} {reason}"
            self._session.channel.send("fatal", message=message)
            raise pytest.exit.Exception(message, returncode=pytest.ExitCode.INTERNAL_ERROR)

    # -- the worker ---------------------------------------------------------

    def finish(self) -> None:
        """After the worker's last test: tear the shared fixtures down while the controller still listens.

        A teardown that fails reaches the run's warnings summary (every test
        that used the fixture has been reported by then).
        """
        if self._shared is None:
            return
        error = self._shared.teardown()
        self._read_capture()  # their teardown's output belongs to no test: dropped
        if error is not None:
            self._session._emit(
                "warning", message=f"teardown of a shared fixture (--executor-fork-shared) failed in worker "
                f"{self._session.worker_id}:\n{error}", category="pytest:PytestWarning", filename="", lineno=0,
                when="runtest", nodeid="", location=None,
            )

    def run(self, item: pytest.Item, task: Task) -> None:
        """Run ``item``'s protocol in a child, forward its events, report its crash or timeout."""
        self._session._flush()
        self._started = time.time()
        read_fd, write_fd = os.pipe()
        # Cached on the item, and its module's relative path on the session: worked out here,
        # once, rather than in every child, which throws its caches away (and pays copy-on-write
        # faults for the pages it walks to work them out).
        item.location  # noqa: B018 - a cached property, read for its side effect
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        # Every object alive now is moved out of the collector's reach: the child's
        # collections then never write to (so never copy) the pages the worker holds.
        gc.freeze()
        pid = _fork()
        if pid == 0:
            self._child(item, read_fd, write_fd)
        os.close(write_fd)
        seen = _Seen()
        returncode, timed_out = self._watch(pid, read_fd, task, seen)
        if not seen.done:
            self._report_lost_child(item, task, seen, returncode, timed_out)
        if seen.exit is not None:
            raise pytest.exit.Exception(seen.exit[0], seen.exit[1])
        if seen.interrupt:
            raise KeyboardInterrupt

    def _watch(self, pid: int, read_fd: int, task: Task, seen: _Seen) -> tuple[int, bool]:
        """Forward the child's events until it exits; (its return code, whether it timed out)."""
        pidfd = open_pidfd(pid)
        decoder = FrameDecoder()
        deadline = time.monotonic() + task.timeout if task.timeout else None
        watched = [read_fd] if pidfd is None else [read_fd, pidfd]
        returncode: int | None = None
        timed_out = False
        try:
            while returncode is None:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if pidfd is None:  # no exit notification: notice the exit by polling
                    wait = 0.05 if wait is None else min(wait, 0.05)
                ready, _, _ = select.select(watched, [], [], wait)
                if read_fd in ready:
                    data = os.read(read_fd, 1 << 16)
                    if data:
                        self._forward(decoder.feed(data), seen)
                    else:
                        watched.remove(read_fd)
                if pidfd is None or pidfd in ready:
                    returncode = _poll(pid, self._stats)
                if returncode is None and deadline is not None and time.monotonic() >= deadline:
                    returncode, timed_out = _stop(pid, pidfd), True
            os.set_blocking(read_fd, False)
            for data in read_available(read_fd):
                self._forward(decoder.feed(data), seen)
        finally:
            os.close(read_fd)
            close_pidfd(pidfd)
            _clean_up_after(pid)
        return returncode, timed_out

    def _forward(self, messages: list[Message], seen: _Seen) -> None:
        for name, kwargs in messages:
            if name != "events":
                continue
            for event, data in kwargs["items"]:
                if event == "logstart":
                    seen.logstart = True
                elif event == "result":
                    seen.result = True
                elif event == "done":
                    seen.done = True
                elif event == "exit":
                    seen.exit = (str(data.get("message", "")), data.get("returncode"))
                elif event == "interrupt":
                    seen.interrupt = True
            self._session.channel.send(name, **kwargs)

    def _report_lost_child(self, item: pytest.Item, task: Task, seen: _Seen, returncode: int, timed_out: bool) -> None:
        """Report the item of a child that died (or was stopped) before it was done."""
        session = self._session
        reason = exit_reason(returncode)
        out, err = self._read_capture()
        when = "teardown" if seen.result else "call"  # as the process backend reports a crash
        if timed_out:
            head = (
                f"Timeout: {item.nodeid} did not finish within {task.timeout:g} s; its forked child was "
                f"stopped ({reason}), worker {session.worker_id} goes on."
            )
        else:
            head = f"the forked child running {item.nodeid} died in its {when} ({reason}); worker {session.worker_id} goes on."
        stack = _trim_stack(err)
        detail = "Stack of the child when it was stopped" if timed_out else "Last output of the child (stderr)"
        message = head + (f"\n\n{detail}:\n{stack}" if stack.strip() else "")
        # stderr (the stack dump included) is in the message, trimmed of pytest's frames
        sections = [(f"Captured stdout {when}", out)] if out else []
        worker, start = session.worker_id, self._started
        if not seen.logstart:
            session._emit("logstart", nodeid=item.nodeid, location=item.location, worker=worker)
        self._emit_report(item, when, "failed", message, sections)
        if not seen.result:
            session._emit("result", index=task.position, outcome="failed", worker=worker, elapsed=time.time() - start)
            self._emit_report(item, "teardown", "passed", None, [])
        session._emit("done", index=task.position, worker=worker, start=start, stop=time.time(), crashed=True)
        session._flush()

    def _emit_report(self, item: pytest.Item, when: str, outcome: str, longrepr: str | None, sections: list[tuple[str, str]]) -> None:
        start, stop = self._started, time.time()
        report = pytest.TestReport(
            item.nodeid,
            item.location,
            {name: 1 for name in item.keywords},
            outcome,  # type: ignore[arg-type]
            longrepr,
            when,  # type: ignore[arg-type]
            sections=sections,
            duration=stop - start if when != "teardown" else 0.0,
            start=start,
            stop=stop,
            user_properties=[],
        )
        data = self._config.hook.pytest_report_to_serializable(config=self._config, report=report)
        self._session._emit("logreport", data=data, worker=self._session.worker_id)

    def _read_capture(self) -> tuple[str, str]:
        """What the dead child wrote to the capture files it shares with the worker (``--capture=fd``)."""
        capman: Any = self._config.pluginmanager.get_plugin("capturemanager")
        try:
            captured = capman.read_global_capture()
            return str(captured.out), str(captured.err)
        except Exception:  # no capture (-s), or by sys (kept in the child's memory, lost with it)
            return "", ""

    # -- the child ----------------------------------------------------------

    def _child(self, item: pytest.Item, read_fd: int, write_fd: int) -> NoReturn:
        """Run the protocol of ``item`` and exit: never returns, never runs the worker's exit code."""
        code = 0
        try:
            os.close(read_fd)
            os.setpgid(0, 0)  # its own group: the worker kills whatever the test left in it
            # A crash or timeout dumps the stack to descriptor 2, the capture file during a
            # test: the worker reads it from there (pytest's handler writes to the terminal).
            faulthandler.enable(file=2, all_threads=False)
            session = self._session
            session.channel = _PipeChannel(write_fd)
            # The child runs its one item and nothing else: the session's protocol
            # finds no next task (without asking the controller) and tears all down.
            session._queue.clear()
            session._shutdown = True
            if self._shared is not None:
                self._shared.forget_in_child()
            item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
            session._flush()
        except (KeyboardInterrupt, pytest.exit.Exception):
            pass  # the session told the controller already
        except BaseException:
            code = _CHILD_FAILED
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            _save_coverage()
            os._exit(code)


def _fork() -> int:
    """``os.fork()``, without the warning of Python >= 3.12 about threads: ours are known idle (see fork_unsafe_reason)."""
    if sys.version_info < (3, 12):
        return os.fork()  # no warning to silence: spare the worker the filter copy (pages it writes to)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _poll(pid: int, stats: ForkStats | None = None) -> int | None:
    """The exit code of child ``pid`` once it exited (negative: the signal), else None."""
    try:
        done, status, usage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL
    if not done:
        return None
    if stats is not None:
        stats.reaped(usage)
    return os.waitstatus_to_exitcode(status)


def _stop(pid: int, pidfd: int | None) -> int:
    """Time out a child: SIGABRT (faulthandler dumps its stack), then SIGKILL its group; its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGABRT)  # the child only: what it started is killed below
    if pidfd is not None:
        select.select([pidfd], [], [], _ABORT_GRACE)
    else:
        deadline = time.monotonic() + _ABORT_GRACE
        while _poll_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return -signal.SIGKILL


def _poll_alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return False


def _clean_up_after(pid: int) -> None:
    """Kill what the child left running: its process group, then whatever the worker adopted."""
    signal_group(pid, signal.SIGKILL)
    if has_children():
        kill_own_descendants()


_MACHINERY = tuple(os.sep + name + os.sep for name in ("pluggy", "_pytest", "pytest", "pytest_executor")) + (
    '"<frozen runpy>"',
)


def _trim_stack(text: str, lines: int = 200) -> str:
    """The last ``lines`` lines of ``text``, without pytest's, pluggy's and our frames in a stack dump."""
    kept = [line for line in text.rstrip("\n").splitlines() if not (line.startswith("  File ") and any(p in line for p in _MACHINERY))]
    return "\n".join(kept[-lines:])


def _save_coverage() -> None:
    """Save what coverage.py measured in this child (``os._exit`` skips its exit handler).

    With ``parallel = true`` the data goes to a file of this pid, combined later
    with ``coverage combine``.
    """
    module = sys.modules.get("coverage")
    if module is None:
        return
    with contextlib.suppress(Exception):
        current = module.Coverage.current()
        if current is not None:
            current.stop()
            current.save()


__all__ = ["FORK_UNSAFE", "ItemForker", "fork_unsafe_reason"]
