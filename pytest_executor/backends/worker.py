"""The worker side of the parallel backends: a pytest session that runs the items its controller hands it.

A worker is an ordinary pytest session over the controller's arguments, made
a worker by :func:`become_worker_session` (the ``process``, ``forked``,
``subprocess`` and ``dask`` backends host it as a worker state of the engine's
process pool, :mod:`~pytest_executor.backends._hosted`).  It collects, sends
its collected ids to the controller (which checks them against its own), and
then, instead of pytest's run loop, runs the items the controller hands it
over its channel (an :class:`~pytest_executor.backends._hosted.EngineLink`),
with pytest's normal run protocol, streaming serialized reports back.

Teardown is deferred: once an item's call phase is over the worker reports its
outcome at once (so the controller can release dependents), then waits for its
next item, so fixture scopes are honoured per worker (module and session
fixtures are set up once per worker, torn down only when the next item no
longer needs them).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import time
import warnings
from collections import deque
from typing import Any, NamedTuple, final

import pytest
from _pytest.runner import call_and_report, show_test_item

from pytest_executor.backends._protocol import ENV_FORK_ITEMS, map_paths, path_map_from_env
from pytest_executor.backends._compact import compact_enabled, compact_of, item_keywords
from executor._kill import kill_own_descendants

# Options whose effect belongs to the controller only: files it writes, and
# run control (-x/--maxfail, stepwise, pdb) that it applies to the whole run.
_CONTROLLER_ONLY_OPTIONS: dict[str, Any] = {
    # The terminal summary is the controller's; in a worker its hooks only cost
    # time (plugins import heavy modules for it) while the worker exits.
    "no_summary": True,
    "no_header": True,
    "xmlpath": None,
    "maxfail": 0,
    "stepwise": False,
    "stepwise_skip": False,
    "usepdb": False,
    "executor_report": None,
    "executor_timeline": None,
    "numprocesses": None,
    "dist": "no",
}
# A one-shot worker runs one explicit node id: cache-driven selection must not
# drop it.
_ONESHOT_OPTIONS: dict[str, Any] = {"lf": False, "failedfirst": False, "newfirst": False}
# Cache entries pytest's cacheprovider saves at the end of a session from what
# that session saw: a worker saw only its share of the run, and its save would
# race the controller's (and undo it when it comes last).
_CONTROLLER_CACHE_KEYS = frozenset({"cache/lastfailed", "cache/nodeids", "cache/stepwise"})


class Task(NamedTuple):
    """One item to run, as sent by the controller."""

    position: int
    """The controller's index of the item (echoed back in events)."""
    windex: int
    nodeid: str
    timeout: float | None


def become_worker_session(config: pytest.Config, worker_id: str, channel: Any, *, oneshot: bool = False) -> None:
    """Make this configuring session a worker talking over ``channel`` (a :class:`Channel` or a look-alike)."""
    for name, value in {**_CONTROLLER_ONLY_OPTIONS, **(_ONESHOT_OPTIONS if oneshot else {})}.items():
        if hasattr(config.option, name):
            setattr(config.option, name, value)
    session = WorkerSession(config, worker_id, channel, oneshot=oneshot)
    config.pluginmanager.register(session, "executor-worker-session")
    if os.environ.get(ENV_FORK_ITEMS) == "1":  # the forked backend: each item in a child (see _forked)
        from pytest_executor.backends._forked import ItemForker

        session.forker = ItemForker(session)
        config.pluginmanager.register(session.forker, "executor-item-forker")


def _leave_run_cache_to_controller(config: pytest.Config) -> None:
    """Drop this worker's writes of the run-wide cache entries (``--lf``, ``--nf``, ``--sw``).

    pytest's cacheprovider skips those writes in pytest-xdist workers only
    (they have ``workerinput``); reading them stays as it is, so a worker
    selects with ``--lf``/``--ff`` exactly as the controller does.  Other
    entries (a test's own ``cache.set``) are written as usual.
    """
    cache = getattr(config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return
    write = cache.set

    def set_unless_run_wide(key: str, value: object) -> None:
        if key not in _CONTROLLER_CACHE_KEYS:
            write(key, value)

    setattr(cache, "set", set_unless_run_wide)  # noqa: B010 - mypy forbids assigning to a method


def limit_core_dumps() -> None:
    """A crashing test must not leave a core file in the user's directory."""
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ImportError, ValueError, OSError):
        pass


def _capture_fds(config: pytest.Config) -> list[int]:
    """Descriptors of the fd-capture temp files (stdout, stderr), if capture is by fd."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    capturing = getattr(capman, "_global_capturing", None)
    fds = []
    for name in ("out", "err"):
        capture = getattr(capturing, name, None)
        tmpfile = getattr(capture, "tmpfile", None)
        if capture is not None and hasattr(capture, "targetfd") and tmpfile is not None:
            try:
                fds.append(tmpfile.fileno())
            except (OSError, ValueError):
                pass
    return fds


@final
class WorkerSession:
    """The worker's run loop and the hooks that stream its reports to the controller."""

    def __init__(self, config: pytest.Config, worker_id: str, channel: Any, *, oneshot: bool) -> None:
        self.config = config
        self.worker_id = worker_id
        self.channel = channel
        self.oneshot = oneshot
        self._items: list[pytest.Item] = []
        self._deselected: list[pytest.Item] = []
        self._by_nodeid: dict[str, pytest.Item] | None = None
        self._queue: deque[Task] = deque()
        self._shutdown = False
        self._buffer: list[tuple[str, dict[str, Any]]] = []
        self._current: Task | None = None
        self._next: Task | None = None
        self._handled = False
        self._start = 0.0
        self._last_outcome = "passed"
        self._path_map = path_map_from_env()  # run from a shipped copy (dask): report the controller's paths
        self._compact = compact_enabled() and bool(getattr(channel, "compact_reports", False))
        self._keywords: tuple[str, dict[str, Any]] | None = None
        """(nodeid, keywords) of the running item before it ran, for compact reports (:mod:`._compact`)."""
        self.forker: Any = None
        """An :class:`~pytest_executor.backends._forked.ItemForker` in a worker of the forked backend."""

    # -- collection -------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        """Make sure a crash or a timeout (SIGABRT) dumps the stack to the controller's pipe."""
        if not faulthandler.is_enabled():
            faulthandler.enable(file=sys.__stderr__ or sys.stderr, all_threads=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Point the terminal reporter at /dev/null: the controller prints everything (and saves the run's cache).

        The reporter stays registered: its per-report status hooks still run
        (subtests rely on them) and ``config.get_terminal_writer()`` still works.
        """
        _leave_run_cache_to_controller(self.config)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            from _pytest._io import TerminalWriter

            self._devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed at unconfigure
            reporter._tw = TerminalWriter(self._devnull)
            reporter._show_progress_info = False  # its "[ 42%]" would cost a computation per report, for /dev/null

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Close the channel and the null terminal."""
        try:
            self._flush()
        except (OSError, EOFError):
            pass
        self.channel.close()
        devnull = getattr(self, "_devnull", None)
        if devnull is not None:
            devnull.close()
        kill_own_descendants()  # whatever a test left running, detached or not

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Keep deselected items: the controller may still run some (``--executor-with-deps``)."""
        self._deselected.extend(items)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Tell the controller what was collected so it can check and map the ids."""
        selected = {id(item) for item in session.items}
        self._items = list(session.items) + [item for item in self._deselected if id(item) not in selected]
        self.channel.send(
            "collected",
            ids=[item.nodeid for item in session.items],
            deselected=[item.nodeid for item in self._items[len(session.items) :]],
            pid=os.getpid(),
            capture_fds=_capture_fds(self.config),
        )
        if self.forker is not None:
            self.forker.collected_sent()

    # -- the run loop -----------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        """Run what the controller hands out until it says there is nothing more."""
        task = self._next_task()
        while task is not None:
            item = self._resolve(task)
            if item is None:
                self._emit("missing", index=task.position, nodeid=task.nodeid)
                task = self._next_task()
                continue
            self._current, self._next, self._handled = task, None, False
            self._last_outcome = "passed"
            if self.forker is not None:
                self.forker.run(item, task)
            else:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
            # If another plugin ran its own protocol, our loop fetches the next task.
            task = self._next if self._handled else self._next_task()
        self._current = None
        if self.forker is not None:
            self.forker.finish()  # the forked backend's shared fixtures: torn down while reportable
        self._flush()
        # Everything reportable was sent: the controller need not wait for our exit.
        self.channel.send("bye")
        self._drop_terminal_reporter()
        return True

    def _drop_terminal_reporter(self) -> None:
        """No report comes after the run loop: the worker needs no terminal summary.

        The controller prints the summary (and runs the plugins' terminal
        summary hooks) for the whole run; in a worker those hooks would only
        write to /dev/null, yet some cost much (hypothesis imports itself
        there), competing for the CPU with the controller's own summary and
        delaying the worker's exit that the controller waits for.
        """
        manager = self.config.pluginmanager
        reporter = manager.get_plugin("terminalreporter")
        if reporter is not None:
            manager.unregister(reporter)

    def _resolve(self, task: Task) -> pytest.Item | None:
        if 0 <= task.windex < len(self._items) and self._items[task.windex].nodeid == task.nodeid:
            return self._items[task.windex]
        if self._by_nodeid is None:
            self._by_nodeid = {item.nodeid: item for item in self._items}
        return self._by_nodeid.get(task.nodeid)

    def _next_task(self) -> Task | None:
        """The next task, waiting for the controller if none is queued (flushes first)."""
        while not self._queue and not self._shutdown:
            self._flush()
            name, kwargs = self.channel.recv()
            if name == "run":
                self._queue.extend(Task(*task) for task in kwargs["tasks"])
            elif name == "shutdown":
                self._shutdown = True
        return self._queue.popleft() if self._queue else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """pytest's run protocol, with the teardown deferred until the next item is known."""
        task = self._current
        if task is None or self._handled or item.nodeid != task.nodeid:
            return None
        self._handled = True
        ihook = item.ihook
        self._keywords = (item.nodeid, item_keywords(item)) if self._compact and self.forker is None else None
        self._start = time.time()
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        # The controller learns that the item started (timeouts, crash attribution).
        self._flush()
        hasrequest = hasattr(item, "_request")
        if hasrequest and not item._request:  # type: ignore[attr-defined]
            item._initrequest()  # type: ignore[attr-defined]
        try:
            report = call_and_report(item, "setup")
            if report.passed:
                setup_only = item.config.getoption("setuponly", False)
                if item.config.getoption("setupshow", False):
                    show_test_item(item, add_space=not setup_only)
                if not setup_only:
                    report = call_and_report(item, "call")
            self._emit(
                "result",
                index=task.position,
                # xfail is "skipped" and xpass "passed", as their reports say.
                outcome=str(report.outcome),
                worker=self.worker_id,
                elapsed=time.time() - self._start,
            )
            self._next = self._next_task()
            following: Any = self._resolve(self._next) if self._next is not None else None
            if following is item:
                # A retry of this item: keep its class/module fixtures, tear down only the item.
                following = item.parent
            if item.session.shouldfail or item.session.shouldstop:
                following = None
            call_and_report(item, "teardown", nextitem=following)
        except pytest.exit.Exception as stop:
            # pytest.exit() ends the whole run, not just this session: tell the
            # controller before this session ends (which it would take for a crash).
            self._emit("exit", message=stop.msg, returncode=stop.returncode)
            self._flush()
            raise
        except KeyboardInterrupt:
            # raised by the test (as Ctrl-C would raise it): the run stops, as in the pytest process
            self._emit("interrupt")
            self._flush()
            raise
        finally:
            if hasrequest:
                item._request = False  # type: ignore[attr-defined]
                item.funcargs = None  # type: ignore[attr-defined]
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    # -- events -----------------------------------------------------------

    def _emit(self, name: str, **kwargs: Any) -> None:
        self._buffer.append((name, kwargs))
        if name == "result":
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            items, self._buffer = self._buffer, []
            self.channel.send("events", items=items)

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Forward the start of an item."""
        if self._current is not None:
            self._emit("logstart", nodeid=nodeid, location=location, worker=self.worker_id)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Forward every report (subtests' included), after local plugins adjusted it."""
        if self._current is None:
            return
        if report.when in ("setup", "call") and not report.passed:
            self._last_outcome = str(report.outcome)
        keywords = self._keywords
        if keywords is not None and report.nodeid == keywords[0]:
            compact = compact_of(report, keywords[1])
            if compact is not None:
                self._emit("logreport", nodeid=report.nodeid, compact=compact, worker=self.worker_id)
                return
        data = map_paths(self.config.hook.pytest_report_to_serializable(config=self.config, report=report), self._path_map)
        self._emit("logreport", data=data, worker=self.worker_id)
        if report.failed:
            # A failure must reach the controller even if the worker dies next.
            self._flush()

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        """Forward the end of an item (all its reports were sent)."""
        task = self._current
        if task is None:
            return
        if not self._handled:
            # Another plugin ran its own protocol (full teardown included).
            self._emit("result", index=task.position, outcome=self._last_outcome, worker=self.worker_id, elapsed=0.0)
        self._emit("done", index=task.position, worker=self.worker_id, start=self._start, stop=time.time(), crashed=False)

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        """Forward test-time warnings so the controller's warnings summary shows them.

        Configuration and collection warnings are not forwarded: the controller
        sees the same ones itself.
        """
        if when != "runtest":
            return
        category = warning_message.category
        self._emit(
            "warning",
            message=str(warning_message.message),
            category=f"{category.__module__}:{category.__qualname__}",
            filename=map_paths(warning_message.filename, self._path_map),
            lineno=warning_message.lineno,
            when=when,
            nodeid=nodeid,
            location=location,
        )
