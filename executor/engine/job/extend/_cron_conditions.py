"""Conditions made by the cron helpers: schedule ticks and clock/weekday windows.

Two kinds, both driven by the engine's timers (never polled):

* a :class:`ScheduleTick` is due at the fire times of a schedule (every 10 s,
  daily at 12:00, ...). Asking it is side-effect free; whoever acts on it (a
  :class:`~executor.engine.job.extend.SentinelJob`) calls :meth:`ScheduleTick.consume`
  afterwards, which moves it to the next fire time. Because asking never
  consumes, ``every("1h") & between_clock("09:00", "18:00")`` means the same
  whichever side is written first;
* a window (:class:`ClockWindow`, :class:`WeekdayWindow`) is true for a span
  of each day or week and tells the scheduler when it opens or closes.

Used as a plain job ``condition``, a tick is satisfied from its first fire
time on, so the job starts then.
"""

from __future__ import annotations

import contextlib
import typing as T
from contextvars import ContextVar
from datetime import datetime, time, timedelta

from ..condition import AllSatisfied, AnySatisfied, Condition, TimeCondition, end_of_clock_second
from . import _schedule

if T.TYPE_CHECKING:  # pragma: no cover
    from ...core import Engine

__all__ = ["ClockWindow", "EveryTick", "HourlyTick", "DailyTick", "ScheduleTick", "WeekdayWindow", "WeeklyTick",
           "arm_ticks", "checked_at", "condition_members", "consume_ticks", "contains_ticks"]

# The time a sentinel's check runs "at": the ticks' satisfy() must see the same
# instant as the sentinel's own is-due and consume steps, or a tick falling due
# between them is fired without being consumed.
_check_time: ContextVar[T.Optional[datetime]] = ContextVar("executor_engine_check_time", default=None)


@contextlib.contextmanager
def checked_at(now: datetime) -> T.Iterator[None]:
    """Evaluate ticks inside this block as if the clock read ``now``."""
    token = _check_time.set(now)
    try:
        yield
    finally:
        _check_time.reset(token)


class ScheduleTick(TimeCondition):
    """Due at each fire time of a schedule, until consumed.

    Subclasses give :meth:`first_fire` and :meth:`next_fire`; the tick arms
    itself (computes its first fire time) on first use, so a schedule that
    counts from "now" counts from when its job starts waiting.
    """

    _due: datetime | None = None

    def first_fire(self, now: datetime) -> datetime:
        """The first fire time for a schedule armed at ``now`` (default: the next one after it)."""
        return self.next_fire(now)

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``."""
        raise NotImplementedError

    def arm(self, now: datetime | None = None) -> None:
        """(Re)start the schedule from ``now``."""
        self._due = self.first_fire(now or datetime.now())

    @property
    def due_at(self) -> datetime:
        """The next fire time (arming the tick if needed)."""
        if self._due is None:
            self.arm()
        assert self._due is not None
        return self._due

    def is_due(self, now: datetime) -> bool:
        """Whether a fire time has been reached and not consumed yet."""
        return now >= self.due_at

    def satisfy(self, engine: "Engine") -> bool:
        """True from the fire time until :meth:`consume` is called."""
        return self.is_due(_check_time.get() or datetime.now())

    def next_change(self, now: float) -> float | None:
        """The fire time, or None while a fire is due (only consuming it changes the value)."""
        due = self.due_at.timestamp()
        return due if due > now else None

    def consume(self, now: datetime) -> None:
        """Move to the first fire time after ``now``: missed fire times are skipped, not replayed."""
        if self.is_due(now):
            self._due = self.next_fire(now)

    def __getstate__(self) -> dict[str, T.Any]:
        # the armed time is runtime state: a reloaded job re-arms from its own start
        state = dict(self.__dict__)
        state.pop("_due", None)
        return state


class EveryTick(ScheduleTick):
    """Due every ``period`` from the moment the schedule is armed (at once if ``immediate``)."""

    def __init__(self, period: str | float | int | timedelta, immediate: bool = True) -> None:
        self.period = _schedule.parse_period(period)
        if not isinstance(immediate, bool):
            raise TypeError(f"immediate must be True or False, got {immediate!r}")
        self.immediate = immediate
        self._anchor: datetime | None = None

    def first_fire(self, now: datetime) -> datetime:
        """``now`` when immediate, else one period later; later fires stay on that grid."""
        self._anchor = now if self.immediate else now + self.period
        return self._anchor

    def next_fire(self, after: datetime) -> datetime:
        """The next point of the grid ``anchor + k * period`` after ``after``."""
        if self._anchor is None:
            self._anchor = after
        return _schedule.next_period_tick(self._anchor, self.period, after)

    def __repr__(self) -> str:
        return f"every({self.period!s}, immediate={self.immediate})"


class DailyTick(ScheduleTick):
    """Due every day at clock time ``at``."""

    def __init__(self, at: str | time) -> None:
        self.at = _schedule.parse_clock(at)

    def next_fire(self, after: datetime) -> datetime:
        """Tomorrow's or today's ``at``, whichever comes first after ``after``."""
        return _schedule.next_clock(self.at, after)

    def __repr__(self) -> str:
        return f"daily(at={self.at.isoformat()!r})"


class HourlyTick(ScheduleTick):
    """Due every hour at ``minute:second`` past the hour."""

    def __init__(self, at: str | int) -> None:
        self.minute, self.second = _schedule.parse_minute_second(at)

    def next_fire(self, after: datetime) -> datetime:
        """The next ``HH:minute:second`` after ``after``."""
        return _schedule.next_hourly(self.minute, self.second, after)

    def __repr__(self) -> str:
        return f"hourly(at=':{self.minute:02d}:{self.second:02d}')"


class WeeklyTick(ScheduleTick):
    """Due every week on ``on`` at clock time ``at``."""

    def __init__(self, on: str | int, at: str | time) -> None:
        self.weekday = _schedule.parse_weekday(on)
        self.at = _schedule.parse_clock(at)

    def next_fire(self, after: datetime) -> datetime:
        """The next such weekday and time after ``after``."""
        return _schedule.next_weekly(self.weekday, self.at, after)

    def __repr__(self) -> str:
        return f"weekly(on={_schedule.WEEKDAY_NAMES[self.weekday]!r}, at={self.at.isoformat()!r})"


class ClockWindow(TimeCondition):
    """True each day from ``start`` to ``end``, both included (to the second, as upstream's clock conditions).

    A window whose end is before its start wraps over midnight; one that ends
    the second before it starts is always open.
    """

    def __init__(self, start: str | time | None, end: str | time | None) -> None:
        if start is None and end is None:
            raise ValueError("a clock window needs a start, an end or both")
        self.start = None if start is None else _schedule.parse_clock(start)
        self.end = None if end is None else _schedule.parse_clock(end)
        #: the window as [_open_from, _until): None leaves that side open
        self._open_from = self.start
        self._until = None if self.end is None else end_of_clock_second(self.end)
        if self._open_from is not None and self._open_from == self._until:
            self._open_from = self._until = None  # e.g. 12:00:01 to 12:00:00: the whole day

    def satisfy(self, engine: "Engine") -> bool:
        """Whether the current time of day is inside the window."""
        return self.holds_at(datetime.now())

    def holds_at(self, moment: datetime) -> bool:
        """Whether ``moment``'s time of day is inside the window."""
        return _schedule.in_clock_window(self._open_from, self._until, moment)

    def next_change(self, now: float) -> float | None:
        """When the window next opens or closes."""
        moment = _schedule.next_clock_window_change(self._open_from, self._until, datetime.fromtimestamp(now))
        return None if moment is None else moment.timestamp()

    def __repr__(self) -> str:
        return f"ClockWindow({self.start}, {self.end})"


class WeekdayWindow(TimeCondition):
    """True from weekday ``first`` to ``last`` inclusive (Monday = 0); wraps over the weekend if last < first."""

    def __init__(self, first: str | int | None, last: str | int | None) -> None:
        if first is None and last is None:
            raise ValueError("a weekday window needs a first day, a last day or both")
        self.first = None if first is None else _schedule.parse_weekday(first)
        self.last = None if last is None else _schedule.parse_weekday(last)

    def satisfy(self, engine: "Engine") -> bool:
        """Whether today is inside the window."""
        return self.holds_at(datetime.now())

    def holds_at(self, moment: datetime) -> bool:
        """Whether ``moment``'s day is inside the window."""
        return _schedule.in_weekday_window(self.first, self.last, moment)

    def next_change(self, now: float) -> float | None:
        """The next midnight at which the window opens or closes."""
        moment = _schedule.next_weekday_window_change(self.first, self.last, datetime.fromtimestamp(now))
        return None if moment is None else moment.timestamp()

    def __repr__(self) -> str:
        return f"WeekdayWindow({self.first}, {self.last})"


def condition_members(condition: Condition) -> T.Iterator[Condition]:
    """``condition`` and, recursively, the members of the combinations in it."""
    yield condition
    if isinstance(condition, (AllSatisfied, AnySatisfied)):
        for member in condition.conditions:
            yield from condition_members(member)


def contains_ticks(condition: Condition) -> bool:
    """Whether ``condition`` (or a member of a combination) is a schedule tick."""
    return any(isinstance(member, ScheduleTick) for member in condition_members(condition))


def consume_ticks(condition: Condition, now: datetime | None = None) -> None:
    """Consume every due tick in ``condition``: the fire times up to ``now`` are spent."""
    moment = now or datetime.now()
    for member in condition_members(condition):
        if isinstance(member, ScheduleTick):
            member.consume(moment)


def arm_ticks(condition: Condition, now: datetime | None = None) -> None:
    """(Re)start every schedule in ``condition`` from ``now``."""
    moment = now or datetime.now()
    for member in condition_members(condition):
        if isinstance(member, ScheduleTick):
            member.arm(moment)
