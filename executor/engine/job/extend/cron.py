"""CronJob and the schedule helpers: ``every``, ``daily``, ``hourly``, ``weekly`` and time windows.

A schedule is a :class:`~executor.engine.job.condition.Condition`, so it
combines with ``&`` and ``|``::

    CronJob(backup, daily(at="02:30"))
    CronJob(poll, every("10m") & between_clock("09:00", "18:00") & between_weekday("mon", "fri"))

Fire times (``every``, ``daily``, ``hourly``, ``weekly``) are instants; windows
(``*_clock``, ``*_weekday``) are spans that let the fire times inside them
through. Everything is driven by the engine's timers: a waiting CronJob costs
nothing between two fire times. Times are the machine's local time.
"""

from __future__ import annotations

import typing as T
from datetime import datetime, time, timedelta

from ..base import Job
from ..condition import AfterTimepoint, AllSatisfied, BeforeTimepoint, Condition, EveryPeriod
from ._cron_conditions import ClockWindow, DailyTick, EveryTick, HourlyTick, WeekdayWindow, WeeklyTick
from .sentinel import SentinelJob

__all__ = [
    "CronJob", "EveryPeriod", "after_clock", "after_timepoint", "after_weekday", "before_clock",
    "before_timepoint", "before_weekday", "between_clock", "between_timepoint", "between_weekday", "daily",
    "every", "hourly", "weekly",
]


def every(period_str: T.Union[str, float, int, timedelta], last_submitted_at: T.Optional[datetime] = None,
          immediate: bool = False) -> T.Union[EveryTick, EveryPeriod]:
    """Fire every ``period_str`` (``"10s"``, ``"1h30m"``, seconds, a timedelta), counted from when the job starts.

    ``immediate=True`` also fires at the start.  Upstream's ``every`` is
    ``EveryPeriod`` itself: with ``last_submitted_at`` this returns one.
    """
    if last_submitted_at is not None:
        return EveryPeriod(T.cast(str, period_str), last_submitted_at, immediate)
    return EveryTick(period_str, immediate=immediate)


class _PeriodOrFactory(EveryPeriod):
    """Upstream's ``daily``/``hourly``/``weekly`` are EveryPeriod values ("1d", "1h", "7d"); ours are
    also callable, making a tick at a clock time (``daily(at="02:30")``)."""

    def __init__(self, period_str: str, factory: T.Callable[..., Condition]) -> None:
        super().__init__(period_str)
        self._factory = factory

    def __call__(self, *args: T.Any, **kwargs: T.Any) -> Condition:
        return self._factory(*args, **kwargs)

    def __repr__(self) -> str:
        return f"EveryPeriod(period_str={self.period_str!r}, last_submitted_at={self.last_submitted_at!r}, " \
               f"immediate={self.immediate!r})"


def _daily(at: T.Union[str, time] = "00:00") -> DailyTick:
    """Fire every day at clock time ``at`` (``"HH:MM"`` or ``"HH:MM:SS"``)."""
    return DailyTick(at)


def _hourly(at: T.Union[str, int] = ":00") -> HourlyTick:
    """Fire every hour at ``at`` past the hour (``":15"``, ``":15:30"`` or minutes as an int)."""
    return HourlyTick(at)


def _weekly(on: T.Union[str, int] = "monday", at: T.Union[str, time] = "00:00") -> WeeklyTick:
    """Fire every week on day ``on`` (``"monday"``, ``"mon"`` or 0..6) at clock time ``at``."""
    return WeeklyTick(on, at)


daily = _PeriodOrFactory("1d", _daily)
"""Every day (an ``EveryPeriod("1d")``, as upstream); ``daily(at="02:30")``: every day at 02:30."""
hourly = _PeriodOrFactory("1h", _hourly)
"""Every hour (an ``EveryPeriod("1h")``); ``hourly(at=":15")``: every hour at quarter past."""
weekly = _PeriodOrFactory("7d", _weekly)
"""Every week (an ``EveryPeriod("7d")``); ``weekly(on="fri", at="18:00")``: every Friday at 18:00."""

after_timepoint = AfterTimepoint
before_timepoint = BeforeTimepoint


def after_clock(time_str: T.Union[str, time]) -> ClockWindow:
    """True each day from clock time ``time_str`` (included) until midnight."""
    return ClockWindow(time_str, None)


def before_clock(time_str: T.Union[str, time]) -> ClockWindow:
    """True each day from midnight to clock time ``time_str``, that second included (as upstream)."""
    return ClockWindow(None, time_str)


def between_clock(start: T.Union[str, time], end: T.Union[str, time]) -> ClockWindow:
    """True each day from ``start`` to ``end``, both included (``"22:00"``-``"06:00"`` spans midnight)."""
    return ClockWindow(start, end)


def after_weekday(weekday_str: T.Union[str, int]) -> WeekdayWindow:
    """True from weekday ``weekday_str`` (included) to Sunday."""
    return WeekdayWindow(weekday_str, None)


def before_weekday(weekday_str: T.Union[str, int]) -> WeekdayWindow:
    """True from Monday to weekday ``weekday_str``, that day included (as upstream)."""
    return WeekdayWindow(None, weekday_str)


def between_weekday(start: T.Union[str, int], end: T.Union[str, int]) -> WeekdayWindow:
    """True from weekday ``start`` to ``end`` included (``"fri"``-``"mon"`` spans the weekend)."""
    return WeekdayWindow(start, end)


def between_timepoint(start: datetime, end: datetime) -> AllSatisfied:
    """True after ``start`` and before ``end``."""
    return AllSatisfied([BeforeTimepoint(end), AfterTimepoint(start)])


class CronJob(SentinelJob):
    """Submit a job running ``func`` at each fire time of ``time_period``.

    Args:
        func: what each submitted job runs.
        time_condition: the time period: a schedule built with :func:`every`,
            :func:`daily`, :func:`hourly`, :func:`weekly`, optionally combined
            with windows (``&``/``|``), or any other Condition.
        job_type: the type of the submitted jobs (``"process"`` by default).
        time_delta, sentinel_attrs, **attrs: as for :class:`SentinelJob`
            (``**attrs`` also takes ``args``, ``kwargs``, ``job_kwargs``, ``max_fires``).
    """

    def __init__(
        self,
        func: T.Union[T.Callable[..., T.Any], str],
        time_condition: Condition,
        job_type: T.Union[str, type[Job]] = "process",
        time_delta: float = 0.01,
        sentinel_attrs: T.Optional[dict] = None,
        **attrs: T.Any,
    ) -> None:
        if not isinstance(time_condition, Condition):
            raise TypeError(
                "CronJob time_condition: the time_period must be a schedule such as every('1h') or "
                f"daily(at='12:00'), got {time_condition!r}"
            )
        super().__init__(func, time_condition, job_type, time_delta, sentinel_attrs, **attrs)
