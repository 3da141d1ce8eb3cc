"""The controller side of the xdist integration: the Scheduling object and the job records.

:class:`DependencyScheduling` is what ``pytest_xdist_make_scheduler`` returns
(see :mod:`pytest_executor.xdist` for the design); :class:`Recorder` rebuilds
the run's :class:`~pytest_executor.views.report.JobRecord` rows from the reports the
workers send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import pytest

from pytest_executor.backends._protocol import ChannelClosed
from pytest_executor.xdist._link import RETRIED_ATTRIBUTE, Graph, graph_path
from pytest_executor.xdist._scheduler import DependencyDispatcher, Notify, Send, Shutdown
from pytest_executor.plan.dag import split_param
from pytest_executor.run.local import outcome_of
from pytest_executor.views.report import RUN_KEY, AttemptRecord, JobRecord, RunRecord, run_metadata

if TYPE_CHECKING:
    from pytest_executor.xdist import ControllerSide

XDIST_BACKEND: Final = "xdist"
"""What the records' backend column says for tests run by xdist workers."""


def scope_key(nodeid: str, dist: str) -> str:
    """The group of a test under ``--dist loadscope``/``loadfile``/``loadgroup``."""
    if dist == "loadfile":
        return nodeid.split("::", 1)[0]
    if dist == "loadgroup":
        return nodeid.rsplit("@", 1)[-1] if "@" in nodeid else nodeid
    return split_param(nodeid)[0].rsplit("::", 1)[0]  # loadscope: class, else module


GROUPED_MODES: Final = frozenset({"loadscope", "loadfile", "loadgroup"})


def _show_run(config: pytest.Config) -> None:
    """Register the run view (critical path, ``--executor-timeline``) as a serial run does."""
    from pytest_executor.views._run_view import RunView
    from pytest_executor.config._state import STATE_KEY

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
        dist = config.getoption("dist", "no")
        for n, nodeid in enumerate(collection):
            record = JobRecord(
                test=nodeid,
                backend=XDIST_BACKEND,
                after=[collection[d] for d in graph.deps.get(n, ())] + graph.missing.get(n, []),
                retries=graph.retries.get(n, 0),
                timeout=graph.timeouts.get(n),
                exclusive=n in graph.exclusive,
                group=scope_key(nodeid, dist) if dist in GROUPED_MODES else "",
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
        retried: list[Sequence[Any]] = next(
            (r for r in (getattr(rep, RETRIED_ATTRIBUTE, None) for rep in reports) if r), [])
        record.attempts = [
            AttemptRecord(number, retried_status, retried_duration, record.worker, retried_message)
            for number, (retried_status, retried_duration, retried_message) in enumerate(retried, start=1)
        ]
        record.attempts.append(AttemptRecord(len(retried) + 1, status, duration, record.worker, message))
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
    :class:`~pytest_executor.xdist._scheduler.DependencyDispatcher`.
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
