"""The worker side of the xdist integration: plan, publish the graph, gate and skip tests.

Runs inside each xdist worker whose plugin is active (see :mod:`pytest_executor.xdist`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, final

import pytest

from pytest_executor.backends._protocol import ChannelClosed, FdChannel
from pytest_executor.xdist._link import RETRIED_ATTRIBUTE, Graph, connect, graph_path
from pytest_executor.run.local import AttemptSummary, outcome_of, summarize_attempt
from pytest_executor.xdist._input import INPUT_KEY, worker_input

if TYPE_CHECKING:
    from pytest_executor.config._state import PluginState


#: the attempts of the running item that were retried (on the item, while it runs)
RETRIED_KEY = pytest.StashKey[list["AttemptSummary"]]()


def plan_and_publish(session: pytest.Session, state: PluginState) -> None:
    """Plan an xdist worker's collection and publish the graph for the controller.

    Called by the plugin after collection in xdist workers, instead of starting
    its own controller.  Planning errors are shipped, not raised: the controller
    raises them once, exactly as a serial run would.
    """
    from pytest_executor.plan._planner import plan_session

    config = session.config
    settings = worker_input(config).get(INPUT_KEY)
    if not settings:  # the controller runs without our integration (should not happen)
        return
    try:
        plan = plan_session(session, state.deselected, with_deps=state.settings["with-deps"])
    except pytest.UsageError as error:
        Graph(error=str(error)).dump(graph_path(settings["dir"], worker_input(config)["workerid"]))
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
    graph.dump(graph_path(settings["dir"], worker_input(config)["workerid"]))


@final
class WorkerSide:
    """Plugin object in an xdist worker whose plugin is active: gates, skips, outcomes."""

    def __init__(self, config: pytest.Config, settings: dict[str, Any]) -> None:
        self.config = config
        self.settings = settings
        self.worker_id: str = worker_input(config)["workerid"]
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
        from pytest_executor.config._state import STATE_KEY

        self.plan = session.config.stash[STATE_KEY].plan
        self.graph = graph
        self.index = {item.nodeid: n for n, item in enumerate(session.items)}
        if self.settings["dist"] == "each":
            order = [session.items[n] for n in graph.order]
            session.items[:] = order  # every worker runs all: dependencies first
            position = {id(item): n for n, item in enumerate(self.plan.items)}
            self.index = {item.nodeid: position[id(item)] for item in order}
        elif graph.needs_dispatch:
            self.channel = connect(self.settings["address"], self.settings["token"], self.worker_id)

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
        from pytest_executor.run.controller import blocked_reason

        if not self.plan.deps.get(index) and not self.plan.missing.get(index):
            return None
        return blocked_reason(self.plan, index, self.outcomes)


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
        from pytest_executor.run.local import run_attempts

        side = self.side
        index = side.index.get(item.nodeid)
        if index is None or side.graph is None or side.skipping:
            return None
        retries = side.graph.retries.get(index, 0)
        timeout = side.graph.timeouts.get(index)
        if not retries and timeout is None:
            return None
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        retried: list[AttemptSummary] = []
        item.stash[RETRIED_KEY] = retried
        try:
            run_attempts(item, nextitem, retries=retries, timeout=timeout, on_thread=timeout is not None,
                         before_retry=lambda reports: retried.append(summarize_attempt(reports)))
        finally:
            del item.stash[RETRIED_KEY]
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
            None, pytest.TestReport, pytest.TestReport]:
        """The final attempt's reports carry the attempts before it to the controller (xdist ships them)."""
        report = yield
        retried = item.stash.get(RETRIED_KEY, None)
        if retried:
            setattr(report, RETRIED_ATTRIBUTE, list(retried))
        return report
