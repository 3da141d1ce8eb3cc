"""A pure ready-queue over the dependency graph: which nodes may start now.

No pytest, no I/O, no clock: the caller reports what it started and what
finished, and asks which nodes may start next.  Nodes are integers; their
priority is their position in the ``order`` given (a topological order from
:func:`pytest_executor.plan.dag.topological_order`).

Rules:

* a node is *ready* once every dependency inside the queue has finished
  (dependencies outside the queue are the caller's business);
* at most ``max_running`` nodes run at once;
* an *exclusive* node runs alone: it starts only when nothing runs, and nothing
  starts while it runs.  While an exclusive node is the most urgent ready node,
  nothing less urgent starts (so it is never starved).

Use::

    queue = ReadyQueue(order, deps, exclusive={3}, max_running=4)
    while not queue.is_done:
        for node in queue.ready():
            if can_start_somewhere(node):
                queue.start(node)
        ...
        queue.finish(node)   # when a node's outcome is known
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import final


@final
class ReadyQueue:
    """Tracks pending, ready, running and finished nodes of one run."""

    def __init__(
        self,
        order: Sequence[int],
        deps: Mapping[int, Iterable[int]],
        *,
        exclusive: Collection[int] = (),
        max_running: int | None = None,
    ) -> None:
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be None or >= 1, got {max_running!r}")
        self._rank = {node: rank for rank, node in enumerate(order)}
        if len(self._rank) != len(order):
            raise ValueError("order lists a node twice")
        self._exclusive = frozenset(exclusive)
        self._max_running = max_running
        self._waiting: dict[int, int] = {}
        self._dependents: dict[int, list[int]] = {node: [] for node in order}
        for node in order:
            inside = {dep for dep in deps.get(node, ()) if dep in self._rank}
            self._waiting[node] = len(inside)
            for dep in inside:
                self._dependents[dep].append(node)
        self._order = list(order)
        self._ready: list[int] = [self._rank[node] for node in order if self._waiting[node] == 0]
        """Ranks of ready nodes, kept sorted."""
        self._running: set[int] = set()
        self._finished: set[int] = set()

    @property
    def running(self) -> frozenset[int]:
        """Nodes started and not yet finished."""
        return frozenset(self._running)

    @property
    def finished(self) -> frozenset[int]:
        """Nodes finished (or cancelled)."""
        return frozenset(self._finished)

    @property
    def is_done(self) -> bool:
        """True when every node has finished."""
        return len(self._finished) == len(self._rank)

    def ready(self, limit: int | None = None) -> list[int]:
        """Nodes that may start now, most urgent first (at most ``limit``).

        Starting all of them, or any prefix or subset, keeps the rules.
        """
        return list(itertools.islice(self.iter_ready(), limit))

    def iter_ready(self) -> Iterator[int]:
        """Lazy :meth:`ready`: stop iterating as soon as you have enough.

        Do not start nodes while iterating; collect them first.
        """
        if any(node in self._exclusive for node in self._running):
            return
        room = len(self._ready) if self._max_running is None else self._max_running - len(self._running)
        given = 0
        for rank in self._ready:
            if given >= room:
                return
            node = self._order[rank]
            if node in self._exclusive:
                if not self._running and not given:
                    yield node
                return
            given += 1
            yield node

    def can_start(self, node: int) -> bool:
        """True if ``node`` is ready and starting it now keeps the rules."""
        rank = self._rank[node]
        at = bisect.bisect_left(self._ready, rank)
        if at == len(self._ready) or self._ready[at] != rank:
            return False
        if self._max_running is not None and len(self._running) >= self._max_running:
            return False
        if not self._exclusive:  # the common case: keep this O(log n)
            return True
        if any(other in self._exclusive for other in self._running):
            return False
        if node in self._exclusive:
            return not self._running
        # An exclusive node more urgent than this one is a barrier.
        return not any(self._order[r] in self._exclusive for r in self._ready[:at])

    def start(self, node: int) -> None:
        """Mark a ready node as running."""
        rank = self._rank[node]
        at = bisect.bisect_left(self._ready, rank)
        if at == len(self._ready) or self._ready[at] != rank:
            raise ValueError(f"node {node} is not ready")
        del self._ready[at]
        self._running.add(node)

    def finish(self, node: int) -> list[int]:
        """Mark a running node as finished; return the nodes that became ready."""
        if node not in self._running:
            raise ValueError(f"node {node} is not running")
        self._running.discard(node)
        self._finished.add(node)
        released = []
        for child in self._dependents[node]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0:
                bisect.insort(self._ready, self._rank[child])
                released.append(child)
        return sorted(released, key=self._rank.__getitem__)

    def cancel_pending(self) -> list[int]:
        """Drop every node not started yet (e.g. on ``-x``); return them in order."""
        dropped = [node for node in self._rank if node not in self._running and node not in self._finished]
        self._finished.update(dropped)
        self._ready.clear()
        return sorted(dropped, key=self._rank.__getitem__)
