"""Which jobs bounded a run's wall time, and how short it could have been.

Pure computation over plain :class:`JobSpan` records (no pytest, no I/O), so the
timeline picture, the terminal summary and the unit tests share one answer.

Two questions are answered:

* **The bounding chain** — walk back from the job that finished last; at each
  step, the job's predecessor is whichever of its gates finished last before it
  started: one of its ``after=`` dependencies, or the job that ran before it on
  the same worker.  Those are the only two things that can hold a job back, so
  the chain explains the wall time link by link (gaps between links are
  scheduling overhead or a worker that was busy elsewhere).
* **The ideal wall time** — the longest chain of ``after=`` dependencies,
  weighted by the recorded durations: what the run would take with as many
  workers as jobs and no overhead.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import final

# Clocks of different processes are compared, and reports round their times:
# a predecessor that "stopped" a hair after its successor started still gated it.
_CLOCK_SLACK = 1e-3


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

    @property
    def duration(self) -> float:
        """Seconds the job occupied its worker (never negative)."""
        return max(0.0, self.stop - self.start)


@final
@dataclass(frozen=True)
class CriticalPath:
    """The answer for one run; see the module docstring."""

    chain: tuple[JobSpan, ...]
    """Jobs that bounded the wall time, in the order they ran."""
    wall: float
    """Seconds from the first job's start to the last job's stop."""
    ideal: float
    """Wall time with unlimited workers: the longest dependency chain's duration."""
    ideal_chain: tuple[JobSpan, ...]
    """The dependency chain that sets :attr:`ideal`, in order."""

    @property
    def busy(self) -> float:
        """Seconds the bounding chain's jobs spent running (the rest is waiting)."""
        return sum(span.duration for span in self.chain)

    @property
    def nodeids(self) -> frozenset[str]:
        """Node ids on the bounding chain, for highlighting."""
        return frozenset(span.nodeid for span in self.chain)


def critical_path(spans: Sequence[JobSpan]) -> CriticalPath:
    """Compute the bounding chain, the wall time and the ideal wall time of a run.

    Raises ``ValueError`` on duplicate node ids or a dependency cycle, which a
    real run cannot produce.
    """
    by_id = _index(spans)
    if not by_id:
        return CriticalPath(chain=(), wall=0.0, ideal=0.0, ideal_chain=())
    wall = max(s.stop for s in spans) - min(s.start for s in spans)
    ideal_chain = longest_dependency_chain(by_id)
    return CriticalPath(
        chain=bounding_chain(by_id),
        wall=max(0.0, wall),
        ideal=sum(s.duration for s in ideal_chain),
        ideal_chain=ideal_chain,
    )


def bounding_chain(by_id: Mapping[str, JobSpan]) -> tuple[JobSpan, ...]:
    """The chain of gates ending at the last job to finish (see module docstring)."""
    if not by_id:
        return ()
    gates = _gates(by_id)
    # The last job to stop ends the run; among equals prefer the later start
    # (the shorter job), so zero-length jobs don't hide the real last one.
    current = max(by_id.values(), key=lambda s: (s.stop, s.start, s.nodeid))
    chain = [current]
    seen = {current.nodeid}
    while True:
        ready = [
            g for g in gates[current.nodeid] if g.stop <= current.start + _CLOCK_SLACK
        ]
        if not ready:
            break
        current = max(ready, key=lambda s: (s.stop, s.start, s.nodeid))
        if current.nodeid in seen:  # only reachable with inconsistent clocks
            break
        seen.add(current.nodeid)
        chain.append(current)
    chain.reverse()
    return tuple(chain)


def longest_dependency_chain(by_id: Mapping[str, JobSpan]) -> tuple[JobSpan, ...]:
    """The ``after=`` chain with the largest total duration, in run order."""
    best: dict[str, tuple[float, str | None]] = {}  # nodeid -> (length, predecessor)
    for nodeid in _topological_order(by_id):
        span = by_id[nodeid]
        length, via = 0.0, None
        for dep in _known_deps(span, by_id):
            if best[dep][0] > length:
                length, via = best[dep][0], dep
        best[nodeid] = (length + span.duration, via)
    if not best:
        return ()
    end: str | None = max(best, key=lambda n: (best[n][0], n))
    chain: list[JobSpan] = []
    while end is not None:
        chain.append(by_id[end])
        end = best[end][1]
    chain.reverse()
    return tuple(chain)


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


def _gates(by_id: Mapping[str, JobSpan]) -> dict[str, list[JobSpan]]:
    """For each job: its known dependencies plus its predecessor on the same worker."""
    gates: dict[str, list[JobSpan]] = {
        nodeid: [by_id[d] for d in _known_deps(span, by_id)]
        for nodeid, span in by_id.items()
    }
    lanes: dict[str, list[JobSpan]] = defaultdict(list)
    for span in by_id.values():
        lanes[span.worker].append(span)
    for lane in lanes.values():
        lane.sort(key=lambda s: (s.start, s.stop, s.nodeid))
        # A worker may run jobs concurrently (threads): the gate is the latest
        # job on it that had already stopped when this one started.
        stops: list[tuple[float, int]] = []  # (stop, position in lane), sorted
        for i, span in enumerate(lane):
            at = bisect.bisect_right(stops, (span.start + _CLOCK_SLACK, len(lane)))
            if at:
                gates[span.nodeid].append(lane[stops[at - 1][1]])
            bisect.insort(stops, (span.stop, i))
    return gates


def _topological_order(by_id: Mapping[str, JobSpan]) -> list[str]:
    """Dependencies before dependents; ``ValueError`` naming a cycle if there is one."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in by_id:
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, _known_deps(by_id[root], by_id))]
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
                stack.append((dep, _known_deps(by_id[dep], by_id)))
    return order
