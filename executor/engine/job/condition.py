"""Conditions that decide when a pending job may start.

Every condition answers :meth:`Condition.satisfy`.  Besides that, a condition
tells the scheduler *when it is worth asking again*, so that no pending job is
polled in a loop:

* :meth:`Condition.waits_for` — the jobs whose status changes may flip it;
* :meth:`Condition.next_change` — the next wall-clock time (``time.time()``
  seconds) at which its value may change because time passed;
* :meth:`Condition.needs_polling` — ``True`` for opaque conditions that give
  neither hint; those are re-checked every ``wait_time_delta`` seconds of their job.

The defaults describe an opaque condition, so a user subclass that only
implements ``satisfy`` is polled, and it is always correct.  The built-in
conditions below are fully described and never polled.
"""

from __future__ import annotations

import re
import typing as T
from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta

from .utils import FINISHED_STATUSES, JobStatusType

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

__all__ = [
    "Condition", "AfterAnother", "AfterOthers", "Combination", "AllSatisfied", "AnySatisfied",
    "TimeCondition", "AfterTimepoint", "BeforeTimepoint", "EveryPeriod",
    "AfterClock", "BeforeClock", "AfterWeekday", "BeforeWeekday", "parse_period",
]

_DEFAULT_STATUSES: tuple[JobStatusType, ...] = FINISHED_STATUSES


class Condition:
    """Base of all conditions; combine them with ``&`` (all) and ``|`` (any)."""

    def satisfy(self, engine: "Engine") -> bool:
        """Return True when the job may start now."""
        raise NotImplementedError(f"{type(self).__name__} must implement satisfy(engine)")

    def waits_for(self) -> frozenset[str]:
        """Ids of the jobs whose status changes can change this condition's value."""
        return frozenset()

    def next_change(self, now: float) -> float | None:
        """Next ``time.time()`` at which the value may change by itself; None if never."""
        return None

    def needs_polling(self) -> bool:
        """True when the scheduler has no other way than polling to see a change."""
        return True

    def __and__(self, other: "Condition") -> "AllSatisfied":
        return AllSatisfied(conditions=[self, _check_condition(other, "&")])

    def __or__(self, other: "Condition") -> "AnySatisfied":
        return AnySatisfied(conditions=[self, _check_condition(other, "|")])


def _check_condition(obj: object, where: str) -> Condition:
    if not isinstance(obj, Condition):
        raise TypeError(f"{where}: expected a Condition, got {type(obj).__name__}: {obj!r}")
    return obj


def _check_statuses(statuses: T.Iterable[str], where: str) -> tuple[JobStatusType, ...]:
    from .utils import JOB_STATUSES

    if isinstance(statuses, str):
        statuses = (statuses,)
    out = tuple(statuses)
    bad = [s for s in out if s not in JOB_STATUSES]
    if bad:
        raise ValueError(f"{where}: unknown statuses {bad}; valid: {list(JOB_STATUSES)}")
    return T.cast(tuple[JobStatusType, ...], out)


def _status_of(engine: "Engine", job_id: str) -> str | None:
    job = engine.jobs.get(job_id)
    return None if job is None else job.status


@dataclass
class AfterAnother(Condition):
    """Satisfied once job ``job_id`` has one of ``statuses``."""

    job_id: str
    statuses: T.Iterable[JobStatusType] = _DEFAULT_STATUSES

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str):
            raise TypeError(f"AfterAnother: job_id must be a job id string, got {self.job_id!r}")
        self.statuses = _check_statuses(self.statuses, "AfterAnother")

    def satisfy(self, engine: "Engine") -> bool:
        """True when the other job's status is one of ``statuses``."""
        return _status_of(engine, self.job_id) in T.cast(tuple, self.statuses)

    def waits_for(self) -> frozenset[str]:
        """The one job this condition waits for."""
        return frozenset((self.job_id,))

    def needs_polling(self) -> bool:
        """Never polled: woken by the other job's status changes."""
        return False


@dataclass
class AfterOthers(Condition):
    """Satisfied once all (``mode="all"``) or any (``mode="any"``) of ``job_ids`` has one of ``statuses``."""

    job_ids: T.List[str]
    statuses: T.Iterable[JobStatusType] = _DEFAULT_STATUSES
    mode: T.Literal["all", "any"] = "all"

    def __post_init__(self) -> None:
        if isinstance(self.job_ids, str):
            raise TypeError("AfterOthers: job_ids must be a list of job ids, not one string")
        self.job_ids = list(self.job_ids)
        bad = [j for j in self.job_ids if not isinstance(j, str)]
        if bad:
            raise TypeError(f"AfterOthers: job_ids must be job id strings, got {bad!r}")
        if self.mode not in ("all", "any"):
            raise ValueError(f"AfterOthers: mode must be 'all' or 'any', got {self.mode!r}")
        self.statuses = _check_statuses(self.statuses, "AfterOthers")

    def satisfy(self, engine: "Engine") -> bool:
        """True when all/any of the jobs reached one of ``statuses``."""
        statuses = T.cast(tuple, self.statuses)
        hits = (_status_of(engine, j) in statuses for j in self.job_ids)
        return all(hits) if self.mode == "all" else any(hits)

    def waits_for(self) -> frozenset[str]:
        """The jobs this condition waits for."""
        return frozenset(self.job_ids)

    def needs_polling(self) -> bool:
        """Never polled: woken by the other jobs' status changes."""
        return False


@dataclass
class Combination(Condition):
    """Base of conditions made of sub-conditions (``conditions``): :class:`AllSatisfied`, :class:`AnySatisfied`."""

    conditions: T.List[Condition]

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.conditions, Condition):
            raise TypeError(f"{name}: conditions must be a list of Condition objects")
        self.conditions = [_check_condition(c, name) for c in self.conditions]

    def waits_for(self) -> frozenset[str]:
        """Union of the members' job ids."""
        return frozenset().union(*(c.waits_for() for c in self.conditions))

    def next_change(self, now: float) -> float | None:
        """Earliest of the members' next changes."""
        times = [t for t in (c.next_change(now) for c in self.conditions) if t is not None]
        return min(times) if times else None

    def needs_polling(self) -> bool:
        """Polled when any member is opaque."""
        return any(c.needs_polling() for c in self.conditions)


@dataclass
class AllSatisfied(Combination):
    """Satisfied when every condition in ``conditions`` is."""

    def satisfy(self, engine: "Engine") -> bool:
        """True when all members are satisfied (an empty list is satisfied)."""
        return all(c.satisfy(engine) for c in self.conditions)


@dataclass
class AnySatisfied(Combination):
    """Satisfied when at least one condition in ``conditions`` is."""

    def satisfy(self, engine: "Engine") -> bool:
        """True when some member is satisfied."""
        return any(c.satisfy(engine) for c in self.conditions)


class TimeCondition(Condition):
    """Base of conditions that depend only on the clock (never polled)."""

    def needs_polling(self) -> bool:
        """Never polled: the scheduler sets a timer at :meth:`next_change`."""
        return False


def _now_like(tp: datetime) -> datetime:
    return datetime.now(tp.tzinfo) if tp.tzinfo is not None else datetime.now()


def _check_datetime(value: object, where: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{where}: timepoint must be a datetime.datetime, got {value!r}")
    return value


@dataclass
class AfterTimepoint(TimeCondition):
    """Satisfied after ``timepoint`` (a ``datetime``; naive means local time)."""

    timepoint: datetime

    def __post_init__(self) -> None:
        _check_datetime(self.timepoint, "AfterTimepoint")

    def satisfy(self, engine: "Engine") -> bool:
        """True once the time point has passed."""
        return _now_like(self.timepoint) >= self.timepoint

    def next_change(self, now: float) -> float | None:
        """The time point itself (nothing changes after it)."""
        t = self.timepoint.timestamp()
        return t if t > now else None


@dataclass
class BeforeTimepoint(TimeCondition):
    """Satisfied until ``timepoint``."""

    timepoint: datetime

    def __post_init__(self) -> None:
        _check_datetime(self.timepoint, "BeforeTimepoint")

    def satisfy(self, engine: "Engine") -> bool:
        """True while the time point has not been reached."""
        return _now_like(self.timepoint) < self.timepoint

    def next_change(self, now: float) -> float | None:
        """The time point, when the condition turns false for good."""
        t = self.timepoint.timestamp()
        return t if t > now else None


_PERIOD_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PERIOD_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|w|d|h|m|s)")


def parse_period(period: str) -> timedelta:
    """Parse ``"1d"``, ``"2h30m"``, ``"10s"``, ``"500ms"``, ``"1w"`` into a timedelta."""
    if not isinstance(period, str):
        raise TypeError(f"period must be a string like '1h30m', got {period!r}")
    text = period.replace(" ", "").lower()
    pos, seconds = 0, 0.0
    for m in _PERIOD_RE.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _PERIOD_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid period {period!r}; use numbers with units w, d, h, m, s, ms (e.g. '1h30m')")
    if seconds <= 0:
        raise ValueError(f"period {period!r} must be positive")
    return timedelta(seconds=seconds)


@dataclass
class EveryPeriod(TimeCondition):
    """Satisfied once every ``period_str`` (e.g. ``"1h"``); each success restarts the period.

    With ``immediate=True`` the first check succeeds at once (default
    False, as upstream: the first success comes one period after the first check).
    """

    period_str: str
    last_submitted_at: T.Optional[datetime] = None
    immediate: bool = False

    def __post_init__(self) -> None:
        self._period = parse_period(self.period_str)

    def satisfy(self, engine: "Engine") -> bool:
        """True when a period has elapsed since the last success."""
        now = datetime.now()
        if self.last_submitted_at is None:
            self.last_submitted_at = now
            return self.immediate
        if now - self.last_submitted_at >= self._period:
            self.last_submitted_at = now
            return True
        return False

    def next_change(self, now: float) -> float | None:
        """End of the current period."""
        if self.last_submitted_at is None:
            return now
        return (self.last_submitted_at + self._period).timestamp()


def _parse_clock(text: str, where: str) -> dtime:
    if isinstance(text, dtime):
        return text
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", str(text).strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise ValueError(f"{where}: time_str must look like 'HH:MM' or 'HH:MM:SS', got {text!r}")
    return dtime(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _next_midnight(now: datetime) -> float:
    return datetime.combine(now.date() + timedelta(days=1), dtime()).timestamp()


def end_of_clock_second(clock: dtime) -> T.Optional[dtime]:
    """The exclusive bound of a window that ends *at* ``clock``: the whole second ``clock`` names is in it.

    Upstream compares hours, minutes and seconds, so ``before_clock("12:00")``
    still holds during 12:00:00.  None when that second is the day's last
    (the window then lasts until midnight).
    """
    moment = datetime.combine(datetime.min.date(), clock.replace(microsecond=0)) + timedelta(seconds=1)
    return None if moment.date() != datetime.min.date() else moment.time()


def _clock_change(clock: dtime) -> float:
    now = datetime.now()
    today = datetime.combine(now.date(), clock)
    return today.timestamp() if now < today else _next_midnight(now)


@dataclass
class AfterClock(TimeCondition):
    """Satisfied each day from the clock time ``time_str`` (``"HH:MM[:SS]"``) until midnight."""

    time_str: str

    def __post_init__(self) -> None:
        self._clock = _parse_clock(self.time_str, "AfterClock")

    def satisfy(self, engine: "Engine") -> bool:
        """True when today's clock time has passed."""
        return datetime.now().time() >= self._clock

    def next_change(self, now: float) -> float | None:
        """Today's clock time if ahead, else next midnight."""
        return _clock_change(self._clock)


@dataclass
class BeforeClock(TimeCondition):
    """Satisfied each day from midnight to the clock time ``time_str``, that second included (as upstream)."""

    time_str: str

    def __post_init__(self) -> None:
        self._until = end_of_clock_second(_parse_clock(self.time_str, "BeforeClock"))

    def satisfy(self, engine: "Engine") -> bool:
        """True until today's clock time ``time_str`` has fully passed."""
        return self.holds_at(datetime.now())

    def holds_at(self, moment: datetime) -> bool:
        """Whether the condition holds at ``moment``."""
        return self._until is None or moment.time() < self._until

    def next_change(self, now: float) -> float | None:
        """The end of today's ``time_str`` second if ahead, else next midnight (never for 23:59:59)."""
        return None if self._until is None else _clock_change(self._until)


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _parse_weekday(value: T.Union[str, int], where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        for i, name in enumerate(_WEEKDAYS):
            if key == name or (len(key) >= 3 and name.startswith(key)):
                return i
    raise ValueError(f"{where}: weekday must be a day name like 'monday' or 0..6, got {value!r}")


@dataclass
class AfterWeekday(TimeCondition):
    """Satisfied on ``weekday_str`` and the later days of the week (Monday first)."""

    weekday_str: T.Union[str, int]

    def __post_init__(self) -> None:
        self._day = _parse_weekday(self.weekday_str, "AfterWeekday")

    def satisfy(self, engine: "Engine") -> bool:
        """True when today is that weekday or later in the week."""
        return datetime.now().weekday() >= self._day

    def next_change(self, now: float) -> float | None:
        """Next midnight."""
        return _next_midnight(datetime.now())


@dataclass
class BeforeWeekday(TimeCondition):
    """Satisfied from Monday to ``weekday_str``, that day included (as upstream)."""

    weekday_str: T.Union[str, int]

    def __post_init__(self) -> None:
        self._day = _parse_weekday(self.weekday_str, "BeforeWeekday")

    def satisfy(self, engine: "Engine") -> bool:
        """True when today is that weekday or earlier in the week."""
        return self.holds_at(datetime.now())

    def holds_at(self, moment: datetime) -> bool:
        """Whether the condition holds at ``moment``."""
        return moment.weekday() <= self._day

    def next_change(self, now: float) -> float | None:
        """Next midnight."""
        return _next_midnight(datetime.now())
