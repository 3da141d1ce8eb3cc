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
from datetime import time, timedelta

from ..base import Job
from ..condition import Condition
from ._cron_conditions import ClockWindow, DailyTick, EveryTick, HourlyTick, WeekdayWindow, WeeklyTick
from .sentinel import SentinelJob

__all__ = [
    "CronJob", "after_clock", "after_weekday", "before_clock", "before_weekday", "between_clock",
    "between_weekday", "daily", "every", "hourly", "weekly",
]


def every(period: T.Union[str, float, int, timedelta], immediate: bool = True) -> EveryTick:
    """Fire every ``period`` (``"10s"``, ``"1h30m"``, seconds, a timedelta), counted from when the job starts.

    ``immediate=True`` (default) also fires at the start.
    """
    return EveryTick(period, immediate=immediate)


def daily(at: T.Union[str, time] = "00:00") -> DailyTick:
    """Fire every day at clock time ``at`` (``"HH:MM"`` or ``"HH:MM:SS"``)."""
    return DailyTick(at)


def hourly(at: T.Union[str, int] = ":00") -> HourlyTick:
    """Fire every hour at ``at`` past the hour (``":15"``, ``":15:30"`` or minutes as an int)."""
    return HourlyTick(at)


def weekly(on: T.Union[str, int] = "monday", at: T.Union[str, time] = "00:00") -> WeeklyTick:
    """Fire every week on day ``on`` (``"monday"``, ``"mon"`` or 0..6) at clock time ``at``."""
    return WeeklyTick(on, at)


def after_clock(at: T.Union[str, time]) -> ClockWindow:
    """True each day from clock time ``at`` until midnight."""
    return ClockWindow(at, None)


def before_clock(at: T.Union[str, time]) -> ClockWindow:
    """True each day from midnight until clock time ``at``."""
    return ClockWindow(None, at)


def between_clock(start: T.Union[str, time], end: T.Union[str, time]) -> ClockWindow:
    """True each day from ``start`` to ``end`` (end excluded; ``"22:00"``-``"06:00"`` spans midnight)."""
    return ClockWindow(start, end)


def after_weekday(day: T.Union[str, int]) -> WeekdayWindow:
    """True from weekday ``day`` to Sunday."""
    return WeekdayWindow(day, None)


def before_weekday(day: T.Union[str, int]) -> WeekdayWindow:
    """True from Monday to the day before weekday ``day``."""
    window = WeekdayWindow(None, day)
    if window.last == 0:
        raise ValueError("before_weekday('monday') is never true: the week starts on Monday")
    window.last = T.cast(int, window.last) - 1
    return window


def between_weekday(first: T.Union[str, int], last: T.Union[str, int]) -> WeekdayWindow:
    """True from weekday ``first`` to ``last`` included (``"fri"``-``"mon"`` spans the weekend)."""
    return WeekdayWindow(first, last)


class CronJob(SentinelJob):
    """Submit a job running ``func`` at each fire time of ``time_period``.

    Args:
        func: what each submitted job runs.
        time_period: a schedule built with :func:`every`, :func:`daily`,
            :func:`hourly`, :func:`weekly`, optionally combined with windows
            (``&``/``|``), or any other Condition.
        job_type: the type of the submitted jobs (``"process"`` by default).
        **kwargs: as for :class:`SentinelJob` (``args``, ``kwargs``,
            ``job_kwargs``, ``max_fires``, ``name``, ...).
    """

    def __init__(
        self,
        func: T.Union[T.Callable[..., T.Any], str],
        time_period: Condition,
        job_type: T.Union[str, type[Job]] = "process",
        **kwargs: T.Any,
    ) -> None:
        if not isinstance(time_period, Condition):
            raise TypeError(
                f"time_period must be a schedule such as every('1h') or daily(at='12:00'), got {time_period!r}"
            )
        super().__init__(func, time_period, job_type=job_type, **kwargs)
