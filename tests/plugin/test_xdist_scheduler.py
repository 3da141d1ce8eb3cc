"""Unit tests of the pure xdist dispatch core against a model of xdist workers.

The model worker behaves like xdist's: it runs what it was sent in FIFO order,
starts a test only when it holds the next one too (or was shut down), and —
like our worker-side gate — holds a test until the outcomes on its wait list
arrived.  Random graphs check the promises: no deadlock, dependencies first,
exclusive tests alone, groups on one worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_executor.xdist._scheduler import (
    Action,
    DependencyDispatcher,
    Notify,
    Send,
    Shutdown,
    Ticket,
)
from pytest_executor.plan.dag import topological_order

pytestmark = pytest.mark.timeout(60)


@dataclass
class ModelWorker:
    """An xdist worker as the dispatcher sees it."""

    name: str
    queue: list[Ticket] = field(default_factory=list)
    known: set[int] = field(default_factory=set)
    closed: bool = False
    running: int | None = None

    def can_start(self) -> bool:
        if self.running is not None or not self.queue:
            return False
        has_lookahead = len(self.queue) >= 2 or self.closed
        return has_lookahead and all(test in self.known for test in self.queue[0].wait)


@dataclass
class Run:
    """Drives a dispatcher with model workers until every test completed (or it stalls)."""

    dispatcher: DependencyDispatcher[str]
    workers: dict[str, ModelWorker]
    deps: dict[int, list[int]]
    exclusive: set[int]
    rng: random.Random
    fail: set[int] = field(default_factory=set)
    log: list[tuple[str, int, str]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    started_on: dict[int, str] = field(default_factory=dict)

    def apply(self, actions: list[Action[str]]) -> None:
        for action in actions:
            worker = self.workers[action.worker]
            if isinstance(action, Send):
                assert not worker.closed, "sent a test to a worker told to shut down"
                worker.queue.extend(action.tickets)
            elif isinstance(action, Notify):
                assert action.index in self.done
                worker.known.add(action.index)
            elif isinstance(action, Shutdown):
                worker.closed = True

    def start(self, worker: ModelWorker) -> None:
        test = worker.queue[0].index
        running = [w.running for w in self.workers.values() if w.running is not None]
        assert all(dep in self.done for dep in self.deps.get(test, ())), (test, "before its deps")
        if test in self.exclusive:
            assert not running, f"exclusive {test} started while {running} run"
        assert not any(r in self.exclusive for r in running), f"{test} started beside an exclusive"
        worker.running = test
        self.started_on[test] = worker.name
        self.log.append(("start", test, worker.name))

    def finish(self, worker: ModelWorker) -> None:
        test = worker.queue.pop(0).index
        worker.running = None
        worker.known.add(test)
        self.done.add(test)
        self.log.append(("finish", test, worker.name))
        self.dispatcher.complete(worker.name, test, "failed" if test in self.fail else "passed")
        self.apply(self.dispatcher.schedule())

    def go(self, count: int) -> None:
        for name in self.workers:
            self.dispatcher.add_worker(name)
        self.apply(self.dispatcher.schedule())
        for _ in range(10 * count + 10):
            if len(self.done) == count:
                return
            startable = [w for w in self.workers.values() if w.can_start()]
            for worker in startable:
                self.start(worker)
            running = [w for w in self.workers.values() if w.running is not None]
            assert running, f"deadlock: done={sorted(self.done)} queues={self.snapshot()}"
            self.finish(self.rng.choice(running))
        raise AssertionError("did not finish")

    def snapshot(self) -> dict[str, list[int]]:
        return {name: [t.index for t in w.queue] for name, w in self.workers.items()}


def make_run(
    count: int,
    deps: dict[int, list[int]],
    *,
    workers: int = 2,
    exclusive: set[int] | None = None,
    groups: list[int] | None = None,
    seed: int = 0,
) -> Run:
    order = topological_order(count, deps)
    dispatcher: DependencyDispatcher[str] = DependencyDispatcher(
        order, deps, exclusive=exclusive or set(), groups=groups
    )
    return Run(
        dispatcher=dispatcher,
        workers={f"gw{i}": ModelWorker(f"gw{i}") for i in range(workers)},
        deps=deps,
        exclusive=exclusive or set(),
        rng=random.Random(seed),
    )


def test_chain_stays_on_one_worker_and_independent_tests_spread() -> None:
    # 0 -> 1 -> 2 is a chain; 3..8 are independent
    run = make_run(9, {1: [0], 2: [1]}, workers=2)
    run.go(9)
    assert run.started_on[0] == run.started_on[1] == run.started_on[2]
    assert len(set(run.started_on.values())) == 2


def test_chain_tickets_do_not_wait_on_the_same_worker() -> None:
    dispatcher: DependencyDispatcher[str] = DependencyDispatcher([0, 1, 2, 3], {1: [0]})
    dispatcher.add_worker("gw0")
    dispatcher.add_worker("gw1")
    actions = dispatcher.schedule()
    sends = [a for a in actions if isinstance(a, Send)]
    assert sends[0] == Send("gw0", (Ticket(0), Ticket(1)))
    assert sends[1] == Send("gw1", (Ticket(2), Ticket(3)))
    assert [a for a in actions if isinstance(a, Shutdown)] == [Shutdown("gw0"), Shutdown("gw1")]


def test_remote_dependency_outcome_is_told_to_the_waiting_worker() -> None:
    # 2 needs 0 and 1; 0 and 1 start on different workers, so 2 waits on one of them
    dispatcher: DependencyDispatcher[str] = DependencyDispatcher([0, 1, 2], {2: [0, 1]})
    dispatcher.add_worker("gw0")
    dispatcher.add_worker("gw1")
    first = dispatcher.schedule()
    assert Send("gw0", (Ticket(0),)) in first and Send("gw1", (Ticket(1),)) in first
    sent_two = [a for a in first if isinstance(a, Send) and a.tickets[0].index == 2]
    assert len(sent_two) == 1 and len(sent_two[0].tickets[0].wait) == 1
    holder = sent_two[0].worker
    waited = sent_two[0].tickets[0].wait[0]
    other = "gw1" if holder == "gw0" else "gw0"
    dispatcher.complete(other, waited, "failed")
    assert Notify(holder, waited, "failed") in dispatcher.schedule()


def test_exclusive_waits_for_everything_in_flight_and_holds_back_the_rest() -> None:
    run = make_run(8, {}, workers=3, exclusive={3})
    run.go(8)
    start = run.log.index(("start", 3, run.started_on[3]))
    finish = run.log.index(("finish", 3, run.started_on[3]))
    assert all(event == "start" for event, _, _ in run.log[start : start + 1])
    assert start + 1 == finish


def test_groups_stay_on_one_worker_even_with_cross_group_dependencies() -> None:
    groups = [0, 0, 0, 1, 1, 1, 2, 2]
    deps = {1: [4], 5: [0], 7: [2]}
    run = make_run(8, deps, workers=2, groups=groups)
    run.go(8)
    for group in set(groups):
        assert len({run.started_on[t] for t in range(8) if groups[t] == group}) == 1


def test_crashed_worker_counts_its_test_failed_and_resends_the_rest() -> None:
    dispatcher: DependencyDispatcher[str] = DependencyDispatcher([0, 1, 2, 3], {3: [0]})
    dispatcher.add_worker("gw0")
    dispatcher.schedule()
    assert dispatcher.queue("gw0") == [0, 1]
    assert dispatcher.remove_worker("gw0") == 0
    assert dispatcher.outcome(0) == "failed"
    assert dispatcher.unsent == 3
    dispatcher.add_worker("gw1")
    assert dispatcher.schedule() == [Send("gw1", (Ticket(1), Ticket(2)))]
    dispatcher.complete("gw1", 1, "passed")
    assert dispatcher.schedule() == [
        Notify("gw1", 0, "failed"),
        Send("gw1", (Ticket(3, wait=(0,)),)),
        Shutdown("gw1"),
    ]


def test_abandoned_tests_release_their_waiters_as_cancelled() -> None:
    # the layout -x produces: gw1 holds x, which waits for z queued behind the failure on gw0
    dispatcher: DependencyDispatcher[str] = DependencyDispatcher([0, 1, 2, 3], {3: [1, 2]})
    dispatcher.add_worker("gw0")
    dispatcher.add_worker("gw1")
    dispatcher.schedule()
    assert dispatcher.queue("gw0") == [0, 2] and dispatcher.queue("gw1") == [1, 3]
    dispatcher.complete("gw1", 1, "passed")
    dispatcher.schedule()
    assert dispatcher.abandon("gw0") == [0, 2]
    assert dispatcher.take_actions() == [Notify("gw1", 2, "cancelled")]
    assert dispatcher.outcome(0) == "cancelled"


def test_order_must_be_topological() -> None:
    with pytest.raises(ValueError, match="not topological"):
        DependencyDispatcher([1, 0], {1: [0]})


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, dict[int, list[int]], set[int], list[int] | None, int]:
    count = draw(st.integers(1, 14))
    deps: dict[int, list[int]] = {}
    for test in range(1, count):
        found = draw(st.lists(st.integers(0, test - 1), max_size=3, unique=True))
        if found:
            deps[test] = found
    exclusive = set(draw(st.lists(st.integers(0, count - 1), max_size=2, unique=True)))
    use_groups = draw(st.booleans())
    groups = [draw(st.integers(0, 3)) for _ in range(count)] if use_groups else None
    workers = draw(st.integers(1, 4))
    return count, deps, exclusive, groups, workers


@settings(max_examples=150, deadline=None)
@given(graphs(), st.integers(0, 1000))
def test_random_graphs_never_deadlock_and_keep_every_rule(
    graph: tuple[int, dict[int, list[int]], set[int], list[int] | None, int], seed: int
) -> None:
    count, deps, exclusive, groups, workers = graph
    run = make_run(count, deps, workers=workers, exclusive=exclusive, groups=groups, seed=seed)
    run.fail = {t for t in range(count) if random.Random(seed + t).random() < 0.2}
    run.go(count)
    assert run.dispatcher.is_finished
    if groups is not None:
        for group in set(groups):
            assert len({run.started_on[t] for t in range(count) if groups[t] == group}) == 1
