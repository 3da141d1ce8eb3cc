"""The engine's pure scheduling core: which pending job may start, and when to look again.

No I/O, no asyncio, no threads: the engine feeds it events (a job was added, a
job's status changed, a running job released its slot, time passed) and takes
back decisions (start these, cancel those, fail those).  Because it never reads
the clock by itself, it is unit-tested with plain numbers.

A waiting job is re-evaluated only when something it declared may have changed:

* a status change of a job listed by ``condition.waits_for()``;
* a timer at ``condition.next_change(now)``;
* for opaque conditions (``condition.needs_polling()``), a timer every
  ``poll_interval`` seconds;
* a ``not_before`` time (retry delays).

Jobs whose condition holds wait in per-kind FIFO queues until a slot is free
under both the global limit and their kind's limit; they start in submission
order across kinds.

An *exclusive* job starts only when no other job runs, and nothing starts while
it runs.  Once it is ready it is a barrier: jobs added after it do not start
before it (else a steady stream of small jobs would keep it waiting forever);
jobs added before it still may, and it starts when the last running job ended.

A job with nothing to evaluate (no condition, no upstream job) gets no entry
object: its key and sequence number wait in plain queues and dicts.  A large
submit then allocates no container per job, so it triggers no cyclic garbage
collection (which would walk every job the caller just created).
"""

from __future__ import annotations

import heapq
import itertools
import typing as T
from collections import deque
from dataclasses import dataclass

K = T.TypeVar("K", bound=T.Hashable)

_NO_IDS: frozenset[str] = frozenset()
_MIN_RETRY = 0.001
"""Smallest delay before re-checking a time condition (clocks may fire a hair early)."""


class ConditionLike(T.Protocol):
    """What the scheduler needs from a condition (see :mod:`executor.engine.job.condition`)."""

    def satisfy(self, engine: T.Any) -> bool: ...  # noqa: D102

    def waits_for(self) -> frozenset[str]: ...  # noqa: D102

    def next_change(self, now: float) -> float | None: ...  # noqa: D102

    def needs_polling(self) -> bool: ...  # noqa: D102


@dataclass(eq=False, slots=True)
class _Entry(T.Generic[K]):
    key: K
    job_id: str
    kind: str
    condition: ConditionLike | None
    poll_interval: float
    cancel_on: frozenset[str]
    seq: int
    state: str = "waiting"  # waiting | ready | running | gone
    gen: int = 0
    watching: frozenset[str] = _NO_IDS
    exclusive: bool = False


class Scheduler(T.Generic[K]):
    """Decides which jobs start; all methods are synchronous and cheap."""

    def __init__(
        self,
        context: T.Any,
        max_total: int | None,
        limit_of: T.Callable[[str], int | None],
        status_of: T.Callable[[str], str | None],
    ) -> None:
        self._context = context
        self._max_total = max_total
        self._limit_of = limit_of
        self._status_of = status_of
        self._entries: dict[K, _Entry[K]] = {}
        self._watchers: dict[str, set[_Entry[K]]] = {}
        self._timers: list[tuple[float, int, int, _Entry[K]]] = []
        self._ready: dict[str, deque[_Entry[K]]] = {}
        self._limits: dict[str, int | None] = {}
        self._running_total = 0
        self._running: dict[str, int] = {}
        self._seq = itertools.count()
        self._cancelled: list[tuple[K, str]] = []
        self._failed: list[tuple[K, BaseException]] = []
        # jobs without anything to evaluate ("plain"): per kind, queued keys and their sequence numbers
        self._plain_keys: dict[str, deque[K]] = {}
        self._plain_seqs: dict[str, deque[int]] = {}
        self._plain_ready: dict[K, int] = {}  # key -> sequence number of its queue slot
        self._plain_running: dict[K, str] = {}  # key -> kind
        self._exclusive_ready: deque[_Entry[K]] = deque()  # ready exclusive jobs, oldest first
        self._exclusive_running: K | None = None

    # ----------------------------------------------------------------- events
    def add(
        self,
        key: K,
        job_id: str,
        kind: str,
        condition: ConditionLike | None,
        now: float,
        *,
        poll_interval: float = 0.01,
        cancel_on: T.Iterable[str] = (),
        not_before: float | None = None,
        exclusive: bool = False,
    ) -> None:
        """Register a pending job; it is evaluated now (or at ``not_before``).

        ``exclusive``: the job runs alone (see the module docstring).
        """
        if key in self._entries or key in self._plain_ready or key in self._plain_running:
            raise ValueError(f"job {job_id} is already scheduled")
        if condition is None and not cancel_on and not exclusive and (not_before is None or not_before <= now):
            self._add_plain(key, kind)  # nothing to evaluate: ready at once
            return
        entry = _Entry(key, job_id, kind, condition, poll_interval if poll_interval > 1e-4 else 1e-4,
                       cancel_on if type(cancel_on) is frozenset else frozenset(cancel_on), next(self._seq),
                       exclusive=exclusive)
        self._entries[key] = entry
        if not_before is not None and not_before > now:
            self._push_timer(not_before, entry)
        else:
            self._evaluate(entry, now)

    def _add_plain(self, key: K, kind: str) -> None:
        keys = self._plain_keys.get(kind)
        if keys is None:
            keys = self._plain_keys[kind] = deque()
            self._plain_seqs[kind] = deque()
        seq = next(self._seq)
        keys.append(key)
        self._plain_seqs[kind].append(seq)
        self._plain_ready[key] = seq

    @property
    def watching_any(self) -> bool:
        """True when some waiting job re-evaluates on status changes."""
        return bool(self._watchers)

    def is_watched(self, job_id: str) -> bool:
        """True when some waiting job re-evaluates on a status change of ``job_id``."""
        return job_id in self._watchers

    def job_changed(self, job_id: str, now: float) -> None:
        """A job's status changed: re-evaluate the jobs waiting on it."""
        waiting = self._watchers.pop(job_id, None)
        if not waiting:
            return
        for entry in sorted(waiting, key=lambda e: e.seq):
            if entry.state == "waiting":
                self._evaluate(entry, now)

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, gen, entry = heapq.heappop(timers)
            if entry.state == "waiting" and entry.gen == gen:
                self._evaluate(entry, now)

    def finished(self, key: K) -> None:
        """A running job ended (or left its slot): free the slot."""
        kind = self._plain_running.pop(key, None)
        if kind is None:
            entry = self._entries.get(key)
            if entry is None or entry.state != "running":
                return
            del self._entries[key]
            entry.state = "gone"
            kind = entry.kind
            if entry.exclusive and self._exclusive_running == key:
                self._exclusive_running = None
        self._running_total -= 1
        self._running[kind] -= 1

    def discard(self, key: K) -> bool:
        """Forget a waiting or ready job (cancelled/removed); False if unknown or running."""
        if self._plain_ready.pop(key, None) is not None:  # its queue slot is skipped when reached
            return True
        entry = self._entries.get(key)
        if entry is None or entry.state == "running":
            return False
        del self._entries[key]
        self._unwatch(entry)
        entry.state = "gone"
        return True

    # -------------------------------------------------------------- decisions
    def take_startable(self) -> list[K]:
        """Pop the ready jobs that fit under the limits, oldest first, marking them running."""
        started: list[K] = []
        if self._exclusive_running is not None:
            return started
        exclusive = self._oldest_ready_exclusive()
        while self._max_total is None or self._running_total < self._max_total:
            best: deque[_Entry[K]] | None = None
            best_seq = -1
            plain_kind: str | None = None
            for kind, queue in self._ready.items():
                while queue and queue[0].state != "ready":
                    queue.popleft()
                if not queue or not self._has_room(kind):
                    continue
                if best is None or queue[0].seq < best_seq:
                    best, best_seq = queue, queue[0].seq
            for kind, seqs in self._plain_seqs.items():
                self._skip_stale_plain(kind)
                if not seqs or not self._has_room(kind):
                    continue
                if (best is None and plain_kind is None) or seqs[0] < best_seq:
                    plain_kind, best_seq = kind, seqs[0]
            if exclusive is not None and (best_seq < 0 or exclusive.seq < best_seq):
                # the barrier: nothing younger starts; the exclusive job starts alone, once all ended
                if self._running_total == 0 and not started:
                    started.append(self._start_exclusive(exclusive))
                break
            if plain_kind is not None and (best is None or best_seq != best[0].seq):
                key = self._take_plain(plain_kind)
            elif best is not None:
                entry = best.popleft()
                entry.state = "running"
                key, plain_kind = entry.key, entry.kind
            else:
                break
            self._running_total += 1
            self._running[plain_kind] = self._running.get(plain_kind, 0) + 1
            started.append(key)
        return started

    def _oldest_ready_exclusive(self) -> _Entry[K] | None:
        queue = self._exclusive_ready
        while queue and queue[0].state != "ready":
            queue.popleft()
        return queue[0] if queue else None

    def _start_exclusive(self, entry: _Entry[K]) -> K:
        self._exclusive_ready.popleft()
        entry.state = "running"
        self._exclusive_running = entry.key
        self._running_total += 1
        self._running[entry.kind] = self._running.get(entry.kind, 0) + 1
        return entry.key

    def _skip_stale_plain(self, kind: str) -> None:
        """Drop queue slots of plain jobs discarded (or rescheduled) since they were queued."""
        keys, seqs, ready = self._plain_keys[kind], self._plain_seqs[kind], self._plain_ready
        while keys and ready.get(keys[0]) != seqs[0]:
            keys.popleft()
            seqs.popleft()

    def _take_plain(self, kind: str) -> K:
        key = self._plain_keys[kind].popleft()
        self._plain_seqs[kind].popleft()
        del self._plain_ready[key]
        self._plain_running[key] = kind
        return key

    def take_cancelled(self) -> list[tuple[K, str]]:
        """Jobs to cancel, with the reason (a dependency failed, or it can never start)."""
        out, self._cancelled = self._cancelled, []
        return out

    def take_failed(self) -> list[tuple[K, BaseException]]:
        """Jobs whose condition raised while being evaluated, with the exception."""
        out, self._failed = self._failed, []
        return out

    def next_deadline(self) -> float | None:
        """The earliest pending timer (``time.time()`` seconds), or None."""
        timers = self._timers
        while timers and (timers[0][3].state != "waiting" or timers[0][3].gen != timers[0][2]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # ------------------------------------------------------------ inspection
    def state_of(self, key: K) -> str | None:
        """``waiting``, ``ready``, ``running`` or None when unknown."""
        if key in self._plain_ready:
            return "ready"
        if key in self._plain_running:
            return "running"
        entry = self._entries.get(key)
        return None if entry is None else entry.state

    @property
    def running_count(self) -> int:
        """Number of jobs holding a slot."""
        return self._running_total

    def running_of(self, kind: str) -> int:
        """Number of jobs of ``kind`` holding a slot."""
        return self._running.get(kind, 0)

    # -------------------------------------------------------------- internals
    def _has_room(self, kind: str) -> bool:
        if kind not in self._limits:
            self._limits[kind] = self._limit_of(kind)
        limit = self._limits[kind]
        return limit is None or self._running.get(kind, 0) < limit

    def _push_timer(self, when: float, entry: _Entry[K]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), entry.gen, entry))

    def _unwatch(self, entry: _Entry[K]) -> None:
        for job_id in entry.watching:
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(entry)
                if not watchers:
                    del self._watchers[job_id]
        entry.watching = _NO_IDS

    def _drop(self, entry: _Entry[K]) -> None:
        self._entries.pop(entry.key, None)
        entry.state = "gone"

    def _evaluate(self, entry: _Entry[K], now: float) -> None:
        if entry.watching:
            self._unwatch(entry)
        entry.gen += 1
        for dep in entry.cancel_on:
            status = self._status_of(dep)
            if status in ("failed", "cancelled"):
                self._drop(entry)
                self._cancelled.append((entry.key, f"upstream job {dep} {status}"))
                return
        cond = entry.condition
        try:
            ok = cond is None or bool(cond.satisfy(self._context))
        except Exception as exc:  # a broken condition fails its job, not the engine
            self._drop(entry)
            self._failed.append((entry.key, exc))
            return
        if ok:
            entry.state = "ready"
            if entry.exclusive:
                self._insert_exclusive(entry)
                return
            queue = self._ready.get(entry.kind)
            if queue is None:
                queue = self._ready[entry.kind] = deque()
            queue.append(entry)
            return
        assert cond is not None
        self._wait_for_change(entry, cond, now)

    def _insert_exclusive(self, entry: _Entry[K]) -> None:
        """Queue a ready exclusive job in submission order (a retry or late condition may be older)."""
        queue = self._exclusive_ready
        position = len(queue)
        while position and queue[position - 1].seq > entry.seq:
            position -= 1
        queue.insert(position, entry)

    def _wait_for_change(self, entry: _Entry[K], cond: ConditionLike, now: float) -> None:
        woken = False
        ids = cond.waits_for() | entry.cancel_on
        if ids:
            entry.watching = ids
            for job_id in ids:
                self._watchers.setdefault(job_id, set()).add(entry)
            woken = True
        when = cond.next_change(now)
        if when is not None:
            self._push_timer(max(when, now + _MIN_RETRY), entry)
            woken = True
        if cond.needs_polling():
            self._push_timer(now + entry.poll_interval, entry)
            woken = True
        if not woken:
            self._drop(entry)
            self._cancelled.append((entry.key, "its condition can never be satisfied any more"))
