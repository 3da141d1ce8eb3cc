"""Pure core of the dependency-aware pytest-xdist scheduler: which test goes where, when.

No xdist, no pytest, no I/O, no clock.  :mod:`pytest_executor.xdist` feeds it
events (a worker joined, a test completed, a worker died) and carries out the
actions it returns (:class:`Send`, :class:`Notify`, :class:`Shutdown`).

The model, taken from how an xdist worker behaves:

* tests are integer indices into the (identical) collection of every worker;
* a worker runs the tests it was sent in FIFO order;
* a worker starts a test only once it holds the *next* one too (xdist passes
  it as ``nextitem`` for fixture teardown) or was told to shut down.  A worker
  holding exactly one test is therefore *stalled* until it gets another.

Rules:

* A test is sent together with a *wait list* (:class:`Ticket`): tests running
  on other workers that must complete before it starts.  Dependencies sent
  earlier to the *same* worker are not on the list — FIFO order already runs
  them first and that worker knows their outcome — which is how a dependency
  chain stays on one worker without anybody waiting.
* Normal filling sends only tests with an empty wait list ("free" tests),
  lowest rank first (rank = position in the plan's topological order, i.e.
  collection order unless a dependency moves a test later), a few at a time
  like ``--dist load``.
* A stalled worker that no free test can relieve gets the lowest-ranked test
  whose dependencies have all been sent; its wait list holds it back on the
  worker until they completed.  Because every test is sent after all its
  dependencies, waits always point to tests sent earlier, so the oldest
  unfinished test can always run: the schedule cannot deadlock.
* An exclusive test waits for every test in flight on other workers, and
  tests sent to other workers while it is in flight wait for it: it runs alone.
* With *groups* (``--dist loadscope``/``loadfile``), every group runs on the
  worker that took its first test.
* When nothing is left to send, every worker is told to shut down (it still
  runs what it holds).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, final

W = TypeVar("W", bound=Hashable)
"""A worker key (the scheduler never looks inside)."""


@final
@dataclass(frozen=True)
class Ticket:
    """One test sent to a worker and what it must wait for there."""

    index: int
    wait: tuple[int, ...] = ()
    """Tests running elsewhere whose completion (and outcome) the worker must learn first."""


@final
@dataclass(frozen=True)
class Send(Generic[W]):
    """Send these tests to ``worker`` (in this order)."""

    worker: W
    tickets: tuple[Ticket, ...]


@final
@dataclass(frozen=True)
class Notify(Generic[W]):
    """Tell ``worker`` that test ``index`` completed with ``outcome``."""

    worker: W
    index: int
    outcome: str


@final
@dataclass(frozen=True)
class Shutdown(Generic[W]):
    """Tell ``worker`` no more tests will come (it still runs what it holds)."""

    worker: W


Action = Send[W] | Notify[W] | Shutdown[W]


@final
class DependencyDispatcher(Generic[W]):
    """Decides which worker runs which test, honouring dependencies and exclusivity."""

    def __init__(
        self,
        order: Sequence[int],
        deps: Mapping[int, Iterable[int]],
        *,
        exclusive: Collection[int] = (),
        groups: Sequence[Hashable] | None = None,
        max_chunk: int | None = None,
    ) -> None:
        """``order``: every test once, in a topological order of ``deps``
        (test -> tests it runs after).  ``groups[test]``: its scope key, or
        ``None`` for no grouping.  ``max_chunk`` caps tests sent at once."""
        self._order = list(order)
        self._rank = {test: rank for rank, test in enumerate(self._order)}
        if len(self._rank) != len(self._order):
            raise ValueError("order lists a test twice")
        self._deps = {test: tuple(dict.fromkeys(deps.get(test, ()))) for test in self._order}
        for test, found in self._deps.items():
            for dep in found:
                if self._rank.get(dep, len(self._order)) >= self._rank[test]:
                    raise ValueError(f"order is not topological: {test} before its dependency {dep}")
        self._exclusive = frozenset(exclusive)
        self._groups = groups
        self._max_chunk = max_chunk
        self._unsent: list[int] = list(range(len(self._order)))
        """Ranks of tests not sent (or sent back), sorted."""
        self._where: dict[int, W] = {}
        """Test -> worker it was sent to (kept after completion)."""
        self._queues: dict[W, list[int]] = {}
        """Worker -> tests sent to it and not completed, in FIFO order."""
        self._closed: set[W] = set()
        """Workers told to shut down."""
        self._outcomes: dict[int, str] = {}
        self._watchers: dict[int, dict[W, None]] = {}
        """Test -> workers waiting to learn its outcome."""
        self._told: dict[W, set[int]] = {}
        """Worker -> tests whose outcome it was told."""
        self._waits: dict[int, frozenset[int]] = {}
        """The wait list of the ticket each test in flight was sent with."""
        self._owner: dict[Hashable, W] = {}
        self._actions: list[Action[W]] = []

    # ------------------------------------------------------------ queries

    @property
    def workers(self) -> list[W]:
        """Workers currently known, in the order they joined."""
        return list(self._queues)

    @property
    def unsent(self) -> int:
        """Number of tests not sent to any worker yet."""
        return len(self._unsent)

    @property
    def is_finished(self) -> bool:
        """True when every test has completed."""
        return len(self._outcomes) == len(self._order)

    @property
    def all_sent(self) -> bool:
        """True when nothing is left to send and no worker holds two tests or more."""
        return not self._unsent and all(len(queue) < 2 for queue in self._queues.values())

    def queue(self, worker: W) -> list[int]:
        """Tests sent to ``worker`` and not completed, in the order it runs them."""
        return list(self._queues.get(worker, ()))

    def outcome(self, test: int) -> str | None:
        """Outcome of a completed test, else ``None``."""
        return self._outcomes.get(test)

    # ------------------------------------------------------------- events

    def add_worker(self, worker: W) -> None:
        """A worker is ready to receive tests."""
        if worker in self._queues:
            raise ValueError(f"worker {worker!r} added twice")
        self._queues[worker] = []
        self._told[worker] = set()

    def remove_worker(self, worker: W) -> int | None:
        """A worker left.  Return the test it was running if it crashed, else ``None``.

        Its other tests go back to be sent again; the crashed one counts as
        completed with outcome ``"failed"`` (xdist reports it so).
        """
        queue = self._queues.pop(worker)
        self._closed.discard(worker)
        self._told.pop(worker, None)
        for watchers in self._watchers.values():
            watchers.pop(worker, None)
        for group, owner in list(self._owner.items()):
            if owner == worker:
                del self._owner[group]
        if not queue:
            return None
        crashed, rest = queue[0], queue[1:]
        for test in rest:
            del self._where[test]
            bisect.insort(self._unsent, self._rank[test])
        self._complete(crashed, "failed")
        return crashed

    def abandon(self, worker: W) -> list[int]:
        """``worker`` stopped without running what it holds (``-x``, ``--maxfail``).

        Those tests count as completed with outcome ``"cancelled"``, so workers
        waiting for them go on (and skip what depended on them).
        """
        queue = self._queues.get(worker, [])
        dropped, queue[:] = list(queue), []
        if dropped:
            self._close(worker)
        for test in dropped:
            self._complete(test, "cancelled")
        return dropped

    def complete(self, worker: W, test: int, outcome: str) -> None:
        """``worker`` finished ``test`` (``outcome``: passed, failed, skipped, ...)."""
        self._queues[worker].remove(test)
        self._complete(test, outcome)

    def requeue(self, test: int) -> None:
        """Send ``test`` again (e.g. a plugin asked to rerun a crashed test)."""
        self._outcomes.pop(test, None)
        self._where.pop(test, None)
        rank = self._rank[test]
        at = bisect.bisect_left(self._unsent, rank)
        if at == len(self._unsent) or self._unsent[at] != rank:
            self._unsent.insert(at, rank)

    def take_actions(self) -> list[Action[W]]:
        """Actions decided since the last call, in the order to carry them out."""
        actions, self._actions = self._actions, []
        return actions

    # ----------------------------------------------------------- schedule

    def schedule(self) -> list[Action[W]]:
        """Send what may be sent now; return every pending action."""
        workers = [worker for worker in self._queues if worker not in self._closed]
        if workers:
            self._fill_round_robin(workers)
            for worker in workers:
                self._relieve(worker)
        if not self._unsent:
            for worker in workers:
                self._close(worker)
        return self.take_actions()

    def _fill_round_robin(self, workers: list[W]) -> None:
        """Top up workers below the low-water mark with free tests, one per worker per round."""
        low = max(2, len(self._unsent) // len(workers) // 4)
        high = max(2, len(self._unsent) // len(workers) // 2)
        if self._max_chunk is not None:
            high = max(2, min(high, self._max_chunk))
        hungry = {w: high - len(self._queues[w]) for w in workers if len(self._queues[w]) < low}
        batches: dict[W, list[Ticket]] = {w: [] for w in hungry}
        while hungry:
            for worker in list(hungry):
                test = self._pick_free(worker)
                if test is None:
                    del hungry[worker]
                    continue
                batches[worker].append(self._assign(test, worker))
                hungry[worker] -= 1
                if hungry[worker] <= 0:
                    del hungry[worker]
        for worker, tickets in batches.items():
            if tickets:
                self._actions.append(Send(worker, tuple(tickets)))

    def _relieve(self, worker: W) -> None:
        """Give a stalled worker (exactly one test held) a second test, or shut it down."""
        while len(self._queues[worker]) == 1 and self._unsent:
            test = self._pick_free(worker)
            if test is None:
                test = self._pick_sendable(worker)
            if test is not None:
                self._actions.append(Send(worker, (self._assign(test, worker),)))
                return
            first = self._order[self._unsent[0]]  # all its dependencies were sent
            owner = self._owner_of(first)
            if owner is None or owner in self._closed or owner not in self._queues:
                return  # cannot happen: an unowned first test is sendable to anyone
            self._actions.append(Send(owner, (self._assign(first, owner),)))
        if len(self._queues[worker]) == 1 and self._unsent and not self._may_get_more(worker):
            self._close(worker)

    def _may_get_more(self, worker: W) -> bool:
        """Whether some unsent test could ever go to ``worker`` (groups may forbid it)."""
        if self._groups is None:
            return True
        return any(self._owner_of(self._order[rank]) in (None, worker) for rank in self._unsent)

    def _close(self, worker: W) -> None:
        if worker not in self._closed:
            self._closed.add(worker)
            self._actions.append(Shutdown(worker))

    # ------------------------------------------------------------ picking

    def _owner_of(self, test: int) -> W | None:
        if self._groups is None:
            return None
        return self._owner.get(self._groups[test])

    def _barriers_elsewhere(self, worker: W) -> bool:
        """True if an exclusive test is in flight on another worker."""
        return any(
            test in self._exclusive
            for other, queue in self._queues.items()
            if other != worker
            for test in queue
        )

    def _pick_free(self, worker: W) -> int | None:
        """Lowest-ranked unsent test that ``worker`` could start without waiting."""
        if self._barriers_elsewhere(worker):
            return None
        for rank in self._unsent:
            test = self._order[rank]
            if self._owner_of(test) not in (None, worker):
                continue
            # An exclusive test is taken even while others run: it then waits
            # for them on its worker and holds back what is sent after it.
            if all(dep in self._outcomes or self._where.get(dep) == worker for dep in self._deps[test]):
                return test
        return None

    def _pick_sendable(self, worker: W) -> int | None:
        """Lowest-ranked unsent test whose dependencies were all sent (it may have to wait)."""
        for rank in self._unsent:
            test = self._order[rank]
            if self._owner_of(test) not in (None, worker):
                continue
            if all(dep in self._where or dep in self._outcomes for dep in self._deps[test]):
                return test
        return None

    def _assign(self, test: int, worker: W) -> Ticket:
        """Record ``test`` as sent to ``worker``; return its ticket (and queue notifications)."""
        del self._unsent[bisect.bisect_left(self._unsent, self._rank[test])]
        wait = [dep for dep in self._deps[test] if self._where.get(dep) != worker]
        elsewhere = [t for w, q in self._queues.items() if w != worker for t in q]
        if test in self._exclusive:
            wait += elsewhere
        else:
            wait += [t for t in elsewhere if t in self._exclusive]
        blocked = self._waiting_for(test)
        wait = [t for t in dict.fromkeys(wait) if t not in blocked]
        self._waits[test] = frozenset(wait)
        self._where[test] = worker
        self._queues[worker].append(test)
        if self._groups is not None:
            self._owner.setdefault(self._groups[test], worker)
        for other in wait:
            if other in self._outcomes:
                self._tell(worker, other)
            else:
                self._watchers.setdefault(other, {})[worker] = None
        return Ticket(test, tuple(wait))

    def _waiting_for(self, test: int) -> set[int]:
        """Tests in flight that wait for ``test``, directly or through their worker's FIFO order.

        ``test`` must never wait for one of them: after a crash re-sends
        ``test``, a ticket sent earlier elsewhere may already wait for it, and
        waiting back (an exclusive test waits for everything in flight) would
        deadlock both workers.
        """
        blocked = {test}
        grown = True
        while grown:
            grown = False
            for queue in self._queues.values():
                for position, queued in enumerate(queue):
                    if self._waits.get(queued, frozenset()) & blocked:
                        if not blocked.issuperset(queue[position:]):
                            blocked.update(queue[position:])
                            grown = True
                        break
        blocked.discard(test)
        return blocked

    def _complete(self, test: int, outcome: str) -> None:
        self._outcomes[test] = outcome
        for worker in self._watchers.pop(test, {}):
            self._tell(worker, test)

    def _tell(self, worker: W, test: int) -> None:
        told = self._told[worker]
        if test not in told:
            told.add(test)
            self._actions.append(Notify(worker, test, self._outcomes[test]))
