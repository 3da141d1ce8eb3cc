"""pytest-xdist integration: ``job(after=...)`` and ``exclusive=True`` hold under ``-n``.

Imported only when the ``xdist`` plugin is loaded (``plugin.py`` checks
``pluginmanager.hasplugin("xdist")``); this module imports nothing from xdist at
import time, so the plugin works with pytest-xdist absent or ``-p no:xdist``.

Where the graph comes from
--------------------------
Under xdist the controller never collects; the workers do, and only they hold
the items and their markers.  Each worker therefore runs the plugin's normal
planning (:func:`pytest_executor._plan.build_plan` — the same ``after=``
resolution, cycle and unknown-name errors as a serial run) right after its
collection, and writes the resolved graph as node indices to a JSON file in a
private rendezvous directory that the controller handed it through
``workerinput``.  xdist sends a worker's ``collectionfinish`` event only after
our hook has returned, so when the scheduler receives a collection the graph
file is already complete — no race and no extra round trip.  A worker with
nothing to plan writes no file, and the controller then hands the run to
xdist's own scheduler: an unmarked suite pays one ``os.path.exists`` per worker.
(Running a second collection on the controller would double the start-up cost
of every run; xdist's event channel rejects unknown event names, so it cannot
carry the graph.)

Talking back to the workers
---------------------------
An xdist worker starts a test only once it holds the *next* one too (for
fixture teardown), so a scheduler that sent a test strictly after its
dependencies completed could leave a worker stuck on its last test while
everything else waits for that very test.  The pure core
(:mod:`pytest_executor._xdist_scheduler`) solves this with *tickets*: a test
may be sent early, behind its dependencies on the same worker (FIFO order runs
them first: chains stay on one worker without waiting) or, to keep a worker
moving, with a wait list of tests running elsewhere.  When the graph has
dependencies or exclusive tests, each worker connects back to the controller
over a local socket (Unix socket, else loopback TCP, with a random token).  The
controller sends each ticket there before the test itself and tells a worker
the outcome of every test on a ticket's wait list when it completes.  A
worker-side hook holds the test until those outcomes arrived, then skips it —
with the very reason a serial run gives — if a dependency did not pass.

``--dist`` modes with markers
-----------------------------
``load`` and ``worksteal`` become dependency-aware load balancing;
``loadscope``/``loadfile``/``loadgroup`` keep their grouping (every scope,
file or ``xdist_group`` runs on one worker) and add the dependency rules;
``each`` runs every test on every worker, so dependencies are honoured inside
each worker (topological order, skip on a failed dependency) and
``exclusive`` means nothing there.  A header line says which scheduler runs.

Records
-------
The controller rebuilds one :class:`~pytest_executor.report.JobRecord` per test
from the graph and the reports the workers send, so ``--executor-table``,
``--executor-report`` and ``--executor-timeline`` work with the worker id
(``gw0``...) in the worker column.  The ``pytest_executor_job_*`` hooks need
items and are therefore not called on an xdist controller.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, final

import pytest

from pytest_executor._protocol import ChannelClosed, FdChannel
from pytest_executor._xdist_scheduler import DependencyDispatcher, Notify, Send, Shutdown
from pytest_executor.dag import split_param
from pytest_executor.local import outcome_of
from pytest_executor.report import RUN_KEY, AttemptRecord, JobRecord, RunRecord, run_metadata

if TYPE_CHECKING:
    from pytest_executor.plugin import PluginState

INPUT_KEY: Final = "pytest_executor"
"""Key of our entry in an xdist worker's ``workerinput``."""

XDIST_BACKEND: Final = "xdist"
"""What the records' backend column says for tests run by xdist workers."""

CONFLICTING_OPTIONS: Final = {
    "backend": "xdist already runs the tests in its worker processes",
    "workers": "-n already sets the number of workers",
    "dask-address": "it only applies to --executor-backend=dask",
    "max-jobs": "-n already bounds how many tests run at once",
}
"""Executor options that make no sense together with ``-n``, and why."""

_CONNECT_TIMEOUT = 60.0  # seconds for a worker's hello to reach the controller


# ----------------------------------------------------------------- registration


def register(config: pytest.Config) -> None:
    """Plug the xdist integration into this process (controller or worker side)."""
    if hasattr(config, "workerinput"):
        return  # workers: plan_on_worker() registers what an active plugin needs
    if config.getoption("collectonly", False) or not _distributing(config):
        return
    _reject_conflicting_options(config)
    config.pluginmanager.register(ControllerSide(config), "executor-xdist-controller")


def _workerinput(config: pytest.Config) -> dict[str, Any]:
    """What xdist's controller handed this worker (``{}`` outside workers)."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    return workerinput


def _distributing(config: pytest.Config) -> bool:
    """True when xdist will run the tests in workers (``-n N`` with N > 0, ``--dist``, ``--tx``)."""
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def _reject_conflicting_options(config: pytest.Config) -> None:
    from pytest_executor.options import find_option, raw_option

    for name, why in CONFLICTING_OPTIONS.items():
        value, source = raw_option(config, name)
        if value is None:
            continue
        option = find_option(name)
        where = f"{option.cli}={value}" if source == option.cli else f"{option.ini} = {value} (ini file)"
        raise pytest.UsageError(
            f"{where} cannot be combined with pytest-xdist's -n/--dist: {why}. "
            f"Drop {option.cli if source == option.cli else 'the ' + option.ini + ' ini setting'} "
            "to run under xdist, or drop -n (or pass -n 0 / -p no:xdist) to use the executor's own workers."
        )


# ----------------------------------------------------------------- the graph file


@final
@dataclass
class Graph:
    """The resolved plan of one worker's collection, as node indices (JSON-friendly)."""

    deps: dict[int, list[int]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    exclusive: list[int] = field(default_factory=list)
    missing: dict[int, list[str]] = field(default_factory=dict)
    retries: dict[int, int] = field(default_factory=dict)
    timeouts: dict[int, float] = field(default_factory=dict)
    error: str | None = None
    """The usage error planning raised (cycle, unknown name, bad marker), if any."""

    @property
    def needs_dispatch(self) -> bool:
        """Whether the dependency-aware scheduler must take over from xdist's."""
        return bool(self.deps or self.exclusive)

    def dump(self, path: str) -> None:
        """Write atomically: the controller never sees half a file."""
        data = {
            "deps": self.deps, "order": self.order, "exclusive": self.exclusive,
            "missing": self.missing, "retries": self.retries, "timeouts": self.timeouts,
            "error": self.error,
        }
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str) -> Graph:
        """Read a graph written by :meth:`dump`."""
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)

        def keyed(mapping: dict[str, Any]) -> dict[int, Any]:
            return {int(key): value for key, value in mapping.items()}

        return cls(
            deps=keyed(data["deps"]), order=list(data["order"]), exclusive=list(data["exclusive"]),
            missing=keyed(data["missing"]), retries=keyed(data["retries"]),
            timeouts=keyed(data["timeouts"]), error=data["error"],
        )


def graph_path(directory: str, worker_id: str) -> str:
    """Where worker ``worker_id`` writes its graph."""
    return os.path.join(directory, f"{worker_id}.graph.json")


def scope_key(nodeid: str, dist: str) -> str:
    """The group of a test under ``--dist loadscope``/``loadfile``/``loadgroup``."""
    if dist == "loadfile":
        return nodeid.split("::", 1)[0]
    if dist == "loadgroup":
        return nodeid.rsplit("@", 1)[-1] if "@" in nodeid else nodeid
    return split_param(nodeid)[0].rsplit("::", 1)[0]  # loadscope: class, else module


GROUPED_MODES: Final = frozenset({"loadscope", "loadfile", "loadgroup"})


# ------------------------------------------------------------------ worker side


def plan_on_worker(session: pytest.Session, state: PluginState) -> None:
    """Plan an xdist worker's collection and publish the graph for the controller.

    Called by the plugin after collection in xdist workers, instead of starting
    its own controller.  Planning errors are shipped, not raised: the controller
    raises them once, exactly as a serial run would.
    """
    from pytest_executor._plan import build_plan

    config = session.config
    settings = _workerinput(config).get(INPUT_KEY)
    if not settings:  # the controller runs without our integration (should not happen)
        return
    try:
        plan = build_plan(session.items, state.deselected, with_deps=state.settings["with-deps"])
    except pytest.UsageError as error:
        Graph(error=str(error)).dump(graph_path(settings["dir"], _workerinput(config)["workerid"]))
        return
    if plan.pulled_in:
        session.items[:] = plan.items
    state.plan = plan
    graph = Graph(
        deps=plan.deps,
        order=plan.order,
        exclusive=[n for n, spec in enumerate(plan.specs) if spec.exclusive],
        missing=plan.missing,
        retries={n: spec.retries for n, spec in enumerate(plan.specs) if spec.retries},
        timeouts={
            n: spec.timeout or state.settings["timeout"]
            for n, spec in enumerate(plan.specs)
            if spec.timeout or state.settings["timeout"]
        },
    )
    side = WorkerSide(config, settings)
    side.start(session, graph)
    config.pluginmanager.register(side, "executor-xdist-worker")
    config.pluginmanager.register(WorkerAttempts(side), "executor-xdist-attempts")
    graph.dump(graph_path(settings["dir"], _workerinput(config)["workerid"]))


@final
class WorkerSide:
    """Plugin object in an xdist worker whose plugin is active: gates, skips, outcomes."""

    def __init__(self, config: pytest.Config, settings: dict[str, Any]) -> None:
        self.config = config
        self.settings = settings
        self.worker_id: str = _workerinput(config)["workerid"]
        self.index: dict[str, int] = {}
        self.graph: Graph | None = None
        self.plan: Any = None
        self.channel: FdChannel | None = None
        self.tickets: dict[int, tuple[int, ...]] = {}
        self.outcomes: dict[int, str] = {}
        self.reports: list[pytest.TestReport] = []
        self.skipping = False
        """True while the running test is being skipped for a dependency or condition."""

    def start(self, session: pytest.Session, graph: Graph) -> None:
        """Remember the plan; connect to the controller if it will send tickets."""
        from pytest_executor.plugin import STATE_KEY

        self.plan = session.config.stash[STATE_KEY].plan
        self.graph = graph
        self.index = {item.nodeid: n for n, item in enumerate(session.items)}
        if self.settings["dist"] == "each":
            order = [session.items[n] for n in graph.order]
            session.items[:] = order  # every worker runs all: dependencies first
            position = {id(item): n for n, item in enumerate(self.plan.items)}
            self.index = {item.nodeid: position[id(item)] for item in order}
        elif graph.needs_dispatch:
            self.channel = connect(self.settings["address"])
            self.channel.send("hello", worker=self.worker_id, token=self.settings["token"])

    def pytest_unconfigure(self) -> None:
        """Close the link to the controller."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """Wait at the test's gate, skip it if a dependency did not pass, note its outcome."""
        index = self.index.get(item.nodeid)
        if index is None or self.plan is None:
            return (yield)
        if self.channel is not None:
            self._wait_for_gate(index)
        reason = self._skip_reason(index)
        if reason is None:
            reason = self._wait_for_condition(item, index)
        self.skipping = reason is not None
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
        self.reports = []
        try:
            return (yield)
        finally:
            self.outcomes[index] = outcome_of(self.reports)[0]
            self.reports = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the running test's reports (its outcome decides its dependents)."""
        self.reports.append(report)

    def _wait_for_gate(self, index: int) -> None:
        """Read the controller's messages until the ticket and every outcome it waits for arrived."""
        assert self.channel is not None
        while index not in self.tickets or any(t not in self.outcomes for t in self.tickets[index]):
            try:
                name, data = self.channel.recv()
            except ChannelClosed:
                raise RuntimeError(
                    "pytest-executor: lost the link to the xdist controller while "
                    f"test #{index} waited for its dependencies"
                ) from None
            if name == "tickets":
                for number, wait in data["items"]:
                    self.tickets[number] = tuple(wait)
            elif name == "done":
                self.outcomes.setdefault(data["index"], data["outcome"])

    def _wait_for_condition(self, item: pytest.Item, index: int) -> str | None:
        """Hold the test until its ``condition=`` holds (an engine gate job, as serially)."""
        condition = self.plan.specs[index].condition
        if condition is None:
            return None
        from executor.engine import Engine, LocalJob

        job = LocalJob(_gate, condition=condition, name=f"condition of {item.nodeid}")
        with Engine() as engine:
            engine.submit(job)
            engine.wait_job(job)
        if job.status != "done":
            return f"its condition {condition!r} could not be evaluated (gate job {job.status})"
        return None

    def _skip_reason(self, index: int) -> str | None:
        """The serial run's skip reason (same code: the controller's rule) or ``None``."""
        from pytest_executor.controller import Controller

        if not self.plan.deps.get(index) and not self.plan.missing.get(index):
            return None
        # Reuse the controller's wording exactly: it reads only these attributes.
        view = _OutcomeView(plan=self.plan, outcomes=self.outcomes)
        reason: str | None = Controller._blocked_by(view, index)  # type: ignore[arg-type]
        return reason


def _gate() -> None:
    """Body of a condition gate job: running it is the signal."""


@final
class WorkerAttempts:
    """Runs tests with ``retries=`` or a timeout on an xdist worker, as the local lane does."""

    def __init__(self, side: WorkerSide) -> None:
        self.side = side

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Retry failed attempts / fail a hung call after its timeout; others run as usual."""
        from pytest_executor.local import run_attempts

        side = self.side
        index = side.index.get(item.nodeid)
        if index is None or side.graph is None or side.skipping:
            return None
        retries = side.graph.retries.get(index, 0)
        timeout = side.graph.timeouts.get(index)
        if not retries and timeout is None:
            return None
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        run_attempts(item, nextitem, retries=retries, timeout=timeout, on_thread=timeout is not None)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True


@dataclass
class _OutcomeView:
    """What :meth:`Controller._blocked_by` reads: the plan and the known outcomes."""

    plan: Any
    outcomes: dict[int, str]
    gates_failed: dict[int, str] = field(default_factory=dict)


# ------------------------------------------------------------------- the link


def connect(address: str) -> FdChannel:
    """Open the worker end of the link (``unix:PATH`` or ``tcp:HOST:PORT``)."""
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    fd = sock.detach()
    return FdChannel(fd, fd)


@final
class Rendezvous:
    """The controller's end: a private directory for graphs and a listening socket."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pytest-executor-xdist-")
        self.token = secrets.token_hex(16)
        path = os.path.join(self.directory, "link")
        if hasattr(socket, "AF_UNIX") and len(path) < 100:
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(path)
            self.address = f"unix:{path}"
        else:
            self.server = socket.create_server(("127.0.0.1", 0))
            self.address = f"tcp:127.0.0.1:{self.server.getsockname()[1]}"
        self.server.listen(64)
        self.links: dict[str, FdChannel] = {}

    def link(self, worker_id: str) -> FdChannel:
        """The channel of ``worker_id``; accept connections until its hello arrived."""
        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while worker_id not in self.links:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"pytest-executor: xdist worker {worker_id} never connected")
            self.server.settimeout(left)
            try:
                sock, _ = self.server.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            channel = FdChannel(sock.fileno(), sock.fileno())
            sock.detach()
            try:
                name, data = channel.recv(timeout=left)
            except (ChannelClosed, TimeoutError):
                channel.close()
                continue
            if name != "hello" or data.get("token") != self.token:
                channel.close()  # not one of our workers
                continue
            old = self.links.pop(data["worker"], None)
            if old is not None:
                old.close()
            self.links[data["worker"]] = channel
        return self.links[worker_id]

    def drop(self, worker_id: str) -> None:
        """Forget (and close) the link of a worker that left."""
        channel = self.links.pop(worker_id, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        """Close every socket and remove the directory."""
        for channel in self.links.values():
            channel.close()
        self.links.clear()
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


# -------------------------------------------------------------- controller side


@final
class ControllerSide:
    """Plugin object on the xdist controller: rendezvous, scheduler factory, records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rendezvous: Rendezvous | None = None
        self.scheduler: DependencyScheduling | None = None

    def pytest_configure_node(self, node: Any) -> None:
        """Tell each worker where the rendezvous is (before it starts)."""
        if self.rendezvous is None:
            self.rendezvous = Rendezvous()
        node.workerinput[INPUT_KEY] = {
            "dir": self.rendezvous.directory,
            "address": self.rendezvous.address,
            "token": self.rendezvous.token,
            "dist": self.config.getoption("dist"),
        }

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Our scheduler: xdist's own until a worker's graph asks for more."""
        hook = config.pluginmanager.subset_hook_caller(
            "pytest_xdist_make_scheduler", remove_plugins=[self]
        )

        def fallback() -> Any:
            return hook(config=config, log=log)

        self.scheduler = DependencyScheduling(config, log, fallback, self)
        return self.scheduler

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """A worker that stopped early (``-x``) leaves its tests cancelled, releasing waiters."""
        if error is None and self.scheduler is not None:
            self.scheduler.node_stopped(node)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        """Note when a test started."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.started(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each test's reports for its record and outcome."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.reported(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """Tests that never ran are cancelled in the records (before the JSON is written)."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.close()

    def pytest_unconfigure(self) -> None:
        """Remove the rendezvous directory and close the links."""
        if self.rendezvous is not None:
            self.rendezvous.close()
            self.rendezvous = None

    def say(self, line: str) -> None:
        """One line on the terminal (the header, before the tests run)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)


def _show_run(config: pytest.Config) -> None:
    """Register the run view (critical path, ``--executor-timeline``) as a serial run does."""
    from pytest_executor._run_view import RunView
    from pytest_executor.plugin import STATE_KEY

    if config.pluginmanager.has_plugin("executor-run-view"):
        return
    settings = config.stash[STATE_KEY].settings
    table = settings["table"] or "summary"
    view = RunView(config, timeline=settings["timeline"], summary=table != "none")
    config.pluginmanager.register(view, "executor-run-view")


@final
class Recorder:
    """Builds the run's job records on the controller from the workers' reports."""

    def __init__(self, config: pytest.Config, collection: Sequence[str], graph: Graph, workers: int) -> None:
        self.collection = list(collection)
        self.index = {nodeid: n for n, nodeid in enumerate(collection)}
        self.run = RunRecord()
        config.stash[RUN_KEY] = self.run
        self.run.metadata = run_metadata(
            config, backend=XDIST_BACKEND, workers=workers, max_jobs=None, with_deps=None,
            pulled_in=[], dist=config.getoption("dist"),
        )
        _show_run(config)
        self.records: list[JobRecord] = []
        for n, nodeid in enumerate(collection):
            record = JobRecord(
                test=nodeid,
                backend=XDIST_BACKEND,
                after=[collection[d] for d in graph.deps.get(n, ())] + graph.missing.get(n, []),
                retries=graph.retries.get(n, 0),
                timeout=graph.timeouts.get(n),
                exclusive=n in graph.exclusive,
            )
            if not graph.deps.get(n):
                record.ready = self.run.started
            self.records.append(record)
        for n in graph.order or range(len(collection)):
            self.run.jobs[collection[n]] = self.records[n]
        self.reports: dict[int, list[pytest.TestReport]] = {}

    def started(self, nodeid: str) -> None:
        """A worker began running ``nodeid``."""
        n = self.index.get(nodeid)
        if n is not None:
            record = self.records[n]
            record.status = "running"
            record.start = time.time()
            if record.ready is not None:
                record.wait = max(0.0, record.start - record.ready)

    def reported(self, report: pytest.TestReport) -> None:
        """A report of one phase arrived (from a worker, or a crash report)."""
        n = self.index.get(report.nodeid)
        if n is None:
            return
        self.reports.setdefault(n, []).append(report)
        node = getattr(report, "node", None)
        worker = getattr(getattr(node, "gateway", None), "id", None)
        if worker:
            self.records[n].worker = worker
        if report.when == "teardown" or report.when not in ("setup", "call"):
            self.finish(n)

    def finish(self, n: int) -> str:
        """Fill the record of test ``n`` from its reports; return its outcome."""
        record = self.records[n]
        reports = self.reports.get(n, [])
        status, message = outcome_of(reports) if reports else ("failed", "no report")
        duration = sum(report.duration for report in reports)
        record.status, record.message, record.duration = status, message, duration
        record.stop = time.time()
        record.attempts = [AttemptRecord(1, status, duration, record.worker, message)]
        return status

    def outcome(self, n: int) -> str:
        """Outcome of a completed test (``failed`` if nothing was reported)."""
        return self.finish(n)

    def released(self, tests: Sequence[int]) -> None:
        """Dependencies of ``tests`` all completed now."""
        now = time.time()
        for n in tests:
            if self.records[n].ready is None:
                self.records[n].ready = now

    def close(self) -> None:
        """Tests that never ran are cancelled."""
        for record in self.records:
            if record.status in ("created", "pending", "running"):
                record.status = "cancelled"


@final
class DependencyScheduling:
    """xdist ``Scheduling`` implementation: xdist's own scheduler or our dispatcher.

    Until the first worker's collection arrives it only remembers the nodes.
    Then the worker's graph file decides: none (nothing to plan) — delegate
    everything to the scheduler xdist would have used; a planning error —
    stop the workers and raise it; dependencies or exclusive tests — run the
    :class:`~pytest_executor._xdist_scheduler.DependencyDispatcher`.
    """

    def __init__(
        self, config: pytest.Config, log: Any, fallback: Callable[[], Any], plugin: ControllerSide
    ) -> None:
        from xdist.workermanage import parse_tx_spec_config

        self.config = config
        self.log = log
        self.fallback = fallback
        self.plugin = plugin
        self.dist: str = config.getoption("dist")
        self.numnodes = len(parse_tx_spec_config(config))
        self.pending_nodes: list[Any] = []
        self.delegate: Any = None
        self.dispatcher: DependencyDispatcher[Any] | None = None
        self.collections: dict[Any, list[str]] = {}
        self.collection: list[str] | None = None
        self.graph: Graph | None = None
        self.recorder: Recorder | None = None
        self.started = False

    # ----------------------------------------------------- Scheduling protocol

    @property
    def nodes(self) -> list[Any]:
        """Nodes known to the scheduler."""
        if self.delegate is not None:
            return list(self.delegate.nodes)
        started = self.dispatcher.workers if self.dispatcher is not None else []
        return started + [node for node in self.pending_nodes if node not in started]

    @property
    def collection_is_completed(self) -> bool:
        """All initial workers sent their collection."""
        if self.delegate is not None:
            return bool(self.delegate.collection_is_completed)
        return len(self.collections) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        """Nothing left to send and no worker holds more than its last test."""
        if self.delegate is not None:
            return bool(self.delegate.tests_finished)
        if self.dispatcher is None or not self.collection_is_completed:
            return False
        return self.dispatcher.all_sent

    @property
    def has_pending(self) -> bool:
        """Tests remain to send or to finish."""
        if self.delegate is not None:
            return bool(self.delegate.has_pending)
        if self.dispatcher is None:
            return False
        return self.dispatcher.unsent > 0 or any(self.dispatcher.queue(n) for n in self.dispatcher.workers)

    def add_node(self, node: Any) -> None:
        """A worker is up (its collection follows)."""
        if self.delegate is not None:
            self.delegate.add_node(node)
        else:  # the dispatcher gets it once its collection (and link) arrived
            self.pending_nodes.append(node)

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        """A worker's collection arrived: decide (once) who schedules."""
        if self.delegate is not None:
            self.delegate.add_node_collection(node, collection)
            return
        graph = self._read_graph(node)
        if self.dispatcher is None:
            if graph is None or not graph.needs_dispatch or self.dist == "each":
                self._delegate_to_xdist(node, collection, graph)
                return
            self._take_over(collection, graph)
        if self.collection is not None and list(collection) != self.collection:
            self._collection_differs(node, collection)
            return
        assert self.plugin.rendezvous is not None and self.dispatcher is not None
        self.plugin.rendezvous.link(node.gateway.id)
        self.collections[node] = list(collection)
        if self.started and node in self.pending_nodes:  # a replacement worker joins
            self.pending_nodes.remove(node)
            self.dispatcher.add_worker(node)

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        """A worker finished a test."""
        if self.delegate is not None:
            self.delegate.mark_test_complete(node, item_index, duration)
            return
        assert self.dispatcher is not None and self.recorder is not None
        self.dispatcher.complete(node, item_index, self.recorder.outcome(item_index))
        self._note_released(item_index)
        self._carry_out(self.dispatcher.schedule())

    def mark_test_pending(self, item: str) -> None:
        """Run ``item`` again (a plugin's crash handling asked for it)."""
        if self.delegate is not None:
            self.delegate.mark_test_pending(item)
            return
        assert self.dispatcher is not None and self.collection is not None
        self.dispatcher.requeue(self.collection.index(item))
        self._carry_out(self.dispatcher.schedule())

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        """Only work stealing uses this; our dispatcher never steals."""
        if self.delegate is not None:
            self.delegate.remove_pending_tests_from_node(node, indices)
            return
        raise NotImplementedError("the dependency-aware scheduler does not steal tests")

    def remove_node(self, node: Any) -> str | None:
        """A worker left; return the test it crashed in, if any."""
        if self.delegate is not None:
            result: str | None = self.delegate.remove_node(node)
            return result
        if node in self.pending_nodes:
            self.pending_nodes.remove(node)
            return None
        if self.dispatcher is None:
            return None
        crashed = self.dispatcher.remove_worker(node)
        if self.plugin.rendezvous is not None:
            self.plugin.rendezvous.drop(node.gateway.id)
        if crashed is not None:
            self._note_released(crashed)
        self._carry_out(self.dispatcher.schedule())
        assert self.collection is not None
        return self.collection[crashed] if crashed is not None else None

    def node_stopped(self, node: Any) -> None:
        """``node`` ended its session; tests it still held will not run there."""
        if self.delegate is not None or self.dispatcher is None:
            return
        if node in self.dispatcher.workers and self.dispatcher.abandon(node):
            self._carry_out(self.dispatcher.take_actions())

    def schedule(self) -> None:
        """Start (or, after a new worker joined, continue) handing out tests."""
        if self.delegate is not None:
            self.delegate.schedule()
            return
        assert self.dispatcher is not None
        self.started = True
        for node in [n for n in self.pending_nodes if n in self.collections]:
            self.pending_nodes.remove(node)
            self.dispatcher.add_worker(node)
        self._carry_out(self.dispatcher.schedule())

    # ---------------------------------------------------------------- helpers

    def _read_graph(self, node: Any) -> Graph | None:
        rendezvous = self.plugin.rendezvous
        if rendezvous is None:
            return None
        path = graph_path(rendezvous.directory, node.gateway.id)
        if not os.path.exists(path):
            return None
        graph = Graph.load(path)
        if graph.error is not None:
            for other in [*self.pending_nodes, *self.collections]:
                other.shutdown()  # let them exit now rather than at the teardown timeout
            raise pytest.UsageError(graph.error)
        return graph

    def _delegate_to_xdist(self, node: Any, collection: Sequence[str], graph: Graph | None) -> None:
        """No dependencies to honour: xdist's own scheduler runs the show."""
        self.delegate = self.fallback()
        if self.delegate is None:
            raise pytest.UsageError(f"pytest-xdist has no scheduler for --dist={self.dist}")
        if graph is not None:  # the plugin is active (options, markers): keep records
            ids = list(collection)
            if self.dist == "each":  # workers run their tests in the plan's order
                ids = [""] * len(collection)
                for position, n in enumerate(graph.order):
                    ids[n] = collection[position]
                if graph.needs_dispatch:
                    self.plugin.say(
                        "executor: --dist each: every worker runs every test, "
                        "dependencies first; exclusive=True has no effect"
                    )
            self.recorder = Recorder(self.config, ids, graph, self.numnodes)
        for pending in self.pending_nodes:
            self.delegate.add_node(pending)
        self.pending_nodes.clear()
        self.delegate.add_node_collection(node, collection)

    def _take_over(self, collection: Sequence[str], graph: Graph) -> None:
        """Dependencies or exclusive tests: our dispatcher schedules."""
        self.graph = graph
        self.collection = list(collection)
        grouped = self.dist in GROUPED_MODES
        groups = [scope_key(nodeid, self.dist) for nodeid in collection] if grouped else None
        self.dispatcher = DependencyDispatcher(
            graph.order, graph.deps, exclusive=graph.exclusive, groups=groups,
            max_chunk=self.config.getoption("maxschedchunk", None),
        )
        self.recorder = Recorder(self.config, collection, graph, self.numnodes)
        linked = sum(1 for deps in graph.deps.values() if deps)
        what = f"{linked} test{'s' if linked != 1 else ''} with after=, {len(graph.exclusive)} exclusive"
        if grouped:
            line = (
                f"executor: dependency-aware xdist scheduling ({what}); "
                f"--dist {self.dist} groups each stay on one worker"
            )
        else:
            line = f"executor: dependency-aware xdist scheduling ({what})"
        self.plugin.say(line)

    def _collection_differs(self, node: Any, collection: Sequence[str]) -> None:
        from xdist.report import report_collection_diff

        assert self.collection is not None
        first = next(iter(self.collections), None)
        message = report_collection_diff(
            self.collection, collection, getattr(getattr(first, "gateway", None), "id", "?"), node.gateway.id
        )
        report = pytest.CollectReport(nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[])
        self.config.hook.pytest_collectreport(report=report)

    def _note_released(self, completed: int) -> None:
        assert self.graph is not None and self.dispatcher is not None and self.recorder is not None
        ready = [
            n for n, deps in self.graph.deps.items()
            if completed in deps and all(self.dispatcher.outcome(d) is not None for d in deps)
        ]
        self.recorder.released(ready)

    def _carry_out(self, actions: Sequence[Any]) -> None:
        """Send tickets, outcomes and tests to the workers; shut them down."""
        rendezvous = self.plugin.rendezvous
        for action in actions:
            node = action.worker
            if isinstance(action, Send):
                if rendezvous is not None:
                    items = [(t.index, list(t.wait)) for t in action.tickets]
                    self._send(node, "tickets", items=items)
                node.send_runtest_some([t.index for t in action.tickets])
            elif isinstance(action, Notify):
                self._send(node, "done", index=action.index, outcome=action.outcome)
            elif isinstance(action, Shutdown):
                node.shutdown()

    def _send(self, node: Any, name: str, **data: Any) -> None:
        rendezvous = self.plugin.rendezvous
        assert rendezvous is not None
        channel = rendezvous.links.get(node.gateway.id)
        if channel is None:
            return
        try:
            channel.send(name, **data)
        except ChannelClosed:
            pass  # the worker is gone; xdist reports it and calls remove_node
