"""Which jobs bound a run's wall time, and where the rest of the wall time went.

Pure computation over plain :class:`JobSpan` records (no pytest, no I/O), so the
timeline picture, the terminal summary and the unit tests share one answer.

* **The critical path** is the chain of ``after=`` dependencies with the largest
  total duration: what the run would take with as many workers as jobs and no
  overhead (the *ideal* wall time).  Without dependencies it is the longest
  test, or the longest group where the scheduler keeps a group's tests
  together (a module under xdist's ``--dist loadfile``): those run in sequence
  whatever the number of workers.  Jobs that merely ran one after another on a worker are not chained:
  they did not have to.
* **The rest of the wall time** is accounted for along that chain as it really
  ran: before each of its jobs started, it either waited for a free worker, or
  for an exclusive job to finish (an exclusive job runs alone), or the
  scheduler was slow to start it; after its last job, other jobs were still
  running because they had started late for lack of workers.  So
  ``busy + waiting for a worker + waiting for an exclusive slot + scheduling
  == wall``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import final

@final
@dataclass(frozen=True)
class JobSpan:
    """What one test job did, in wall-clock seconds (``time.time()``)."""

    nodeid: str
    worker: str
    """The worker that ran it (one timeline lane per distinct value)."""
    outcome: str
    """``passed``, ``failed``, ``skipped``, ``error``, ``xfailed``, ``xpassed``..."""
    start: float
    stop: float
    setup: float = 0.0
    """Seconds spent in each phase, as reported by pytest."""
    call: float = 0.0
    teardown: float = 0.0
    wait: float = 0.0
    """Seconds between the job becoming ready and starting on a worker."""
    after: tuple[str, ...] = field(default=())
    """Node ids of the jobs this one waited for (``@pytest.mark.job(after=...)``)."""
    backend: str = ""
    exclusive: bool = False
    """The job ran alone (``job(exclusive=True)``, benchmarks)."""
    group: str = ""
    """Jobs sharing a non-empty group are kept together, one after another (xdist ``--dist loadfile``...)."""

    @property
    def duration(self) -> float:
        """Seconds the job occupied its worker (never negative)."""
        return max(0.0, self.stop - self.start)


@final
@dataclass(frozen=True)
class CriticalPath:
    """The answer for one run; see the module docstring."""

    chain: tuple[JobSpan, ...]
    """The critical path: the heaviest ``after=`` chain, in the order it ran."""
    wall: float
    """Seconds from the first job's start to the last job's stop."""
    ideal: float
    """Wall time with unlimited workers: the chain's total duration."""
    ideal_chain: tuple[JobSpan, ...]
    """Same as :attr:`chain` (kept for callers that name it so)."""
    waiting_worker: float = 0.0
    """Wall seconds the chain (then the jobs after it) waited for a free worker."""
    waiting_exclusive: float = 0.0
    """Wall seconds the chain waited while an exclusive job ran alone."""
    scheduling: float = 0.0
    """The rest of the wall time: the chain's jobs were ready, nothing held them."""

    @property
    def busy(self) -> float:
        """Seconds the chain's jobs spent running."""
        return sum(span.duration for span in self.chain)

    @property
    def nodeids(self) -> frozenset[str]:
        """Node ids on the critical path, for highlighting."""
        return frozenset(span.nodeid for span in self.chain)


def critical_path(spans: Sequence[JobSpan]) -> CriticalPath:
    """Compute the critical path, the wall time and where the wall time went.

    Raises ``ValueError`` on duplicate node ids or a dependency cycle, which a
    real run cannot produce.
    """
    by_id = _index(spans)
    if not by_id:
        return CriticalPath(chain=(), wall=0.0, ideal=0.0, ideal_chain=())
    begin, end = min(s.start for s in spans), max(s.stop for s in spans)
    chain = longest_dependency_chain(by_id)
    worker, exclusive = _waiting(chain, [s for s in spans if s.exclusive], begin, end)
    wall = max(0.0, end - begin)
    busy = sum(s.duration for s in chain)
    return CriticalPath(
        chain=chain,
        wall=wall,
        ideal=busy,
        ideal_chain=chain,
        waiting_worker=worker,
        waiting_exclusive=exclusive,
        scheduling=max(0.0, wall - busy - worker - exclusive),
    )


def _waiting(
    chain: Sequence[JobSpan], exclusive: Sequence[JobSpan], begin: float, end: float
) -> tuple[float, float]:
    """Seconds the chain waited for a free worker and for exclusive jobs (see module docstring)."""
    windows: list[tuple[float, float, str]] = []  # (from, to, the chain job that waited)
    for span in chain:
        ready = span.start - span.wait
        previous = windows[-1][1] if windows else begin
        windows.append((max(previous, ready, begin), span.start, span.nodeid))
    windows.append((chain[-1].stop, end, ""))  # other jobs, started late, still running
    worker = alone = 0.0
    for start, stop, nodeid in windows:
        if stop <= start:
            continue
        blocked = _overlap(start, stop, [s for s in exclusive if s.nodeid != nodeid])
        alone += blocked
        worker += stop - start - blocked
    return worker, alone


def _overlap(start: float, stop: float, spans: Sequence[JobSpan]) -> float:
    """Seconds of ``[start, stop]`` covered by at least one of ``spans``."""
    pieces = sorted((max(start, s.start), min(stop, s.stop)) for s in spans)
    covered, reach = 0.0, start
    for low, high in pieces:
        low = max(low, reach)
        if high > low:
            covered += high - low
            reach = high
    return covered


def longest_dependency_chain(by_id: Mapping[str, JobSpan]) -> tuple[JobSpan, ...]:
    """The chain of ``after=`` dependencies (and kept-together groups) with the largest total duration."""
    edges = {nodeid: _known_deps(span, by_id) for nodeid, span in by_id.items()}
    order = _topological_order(edges)  # a real run has no cycle; a ValueError names one
    grouped = _with_group_edges(by_id, edges)
    try:
        edges, order = grouped, _topological_order(grouped)
    except ValueError:  # only with contradicting clocks: the groups' order is then not trusted
        pass
    best: dict[str, tuple[float, str | None]] = {}  # nodeid -> (length, predecessor)
    for nodeid in order:
        length, via = 0.0, None
        for dep in edges[nodeid]:
            if best[dep][0] > length:
                length, via = best[dep][0], dep
        best[nodeid] = (length + by_id[nodeid].duration, via)
    if not best:
        return ()
    end: str | None = max(best, key=lambda n: (best[n][0], n))
    chain: list[JobSpan] = []
    while end is not None:
        chain.append(by_id[end])
        end = best[end][1]
    chain.reverse()
    return tuple(chain)


def _with_group_edges(by_id: Mapping[str, JobSpan], edges: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """``edges`` plus, in each kept-together group, an edge from every job to the one before it."""
    groups: dict[str, list[JobSpan]] = {}
    for span in by_id.values():
        if span.group:
            groups.setdefault(span.group, []).append(span)
    extra = {nodeid: list(deps) for nodeid, deps in edges.items()}
    for members in groups.values():
        members.sort(key=lambda s: (s.start, s.stop, s.nodeid))
        for before, after in zip(members, members[1:]):
            extra[after.nodeid].append(before.nodeid)
    return extra


def _index(spans: Iterable[JobSpan]) -> dict[str, JobSpan]:
    by_id: dict[str, JobSpan] = {}
    for span in spans:
        if span.nodeid in by_id:
            raise ValueError(f"two job spans share the node id {span.nodeid!r}")
        by_id[span.nodeid] = span
    return by_id


def _known_deps(span: JobSpan, by_id: Mapping[str, JobSpan]) -> list[str]:
    # Dependencies that did not run (deselected, filtered out) cannot gate anything.
    return [dep for dep in span.after if dep in by_id and dep != span.nodeid]


def _topological_order(edges: Mapping[str, list[str]]) -> list[str]:
    """Dependencies before dependents; ``ValueError`` naming a cycle if there is one."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in edges:
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(edges[root]))]
        state[root] = 1
        while stack:
            nodeid, pending = stack[-1]
            if not pending:
                stack.pop()
                state[nodeid] = 2
                order.append(nodeid)
                continue
            dep = pending.pop()
            if state.get(dep) == 1:
                cycle = [n for n, _ in stack]
                cycle = cycle[cycle.index(dep) :] + [dep]
                raise ValueError("dependency cycle: " + " -> ".join(cycle))
            if not state.get(dep):
                state[dep] = 1
                stack.append((dep, list(edges[dep])))
    return order
