"""Pure calendar arithmetic behind the cron helpers.

Everything here works on naive local ``datetime`` values handed in by the
caller: nothing reads the clock, sleeps or touches the engine, so the rules
(when does ``daily(at="12:00")`` fire next? when does a clock window open?)
can be tested exhaustively on their own.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, time, timedelta

from ..condition import parse_period as _parse_period_text

__all__ = [
    "WEEKDAY_NAMES",
    "in_clock_window",
    "in_weekday_window",
    "next_clock",
    "next_clock_window_change",
    "next_hourly",
    "next_period_tick",
    "next_weekday_window_change",
    "next_weekly",
    "parse_clock",
    "parse_minute_second",
    "parse_period",
    "parse_weekday",
]

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_MINUTE_SECOND = re.compile(r"^:?(\d{1,2})(?::(\d{2}))?$")
_ONE_DAY = timedelta(days=1)


def parse_period(period: str | float | int | timedelta) -> timedelta:
    """Turn ``"10s"``, ``"1h30m"``, ``"2d"``, a number of seconds or a timedelta into a timedelta.

    Strings use the engine's period syntax (units ``w``, ``d``, ``h``, ``m``,
    ``s``, ``ms``). The period must be strictly positive.
    """
    if isinstance(period, str):
        return _parse_period_text(period)
    if isinstance(period, bool) or not isinstance(period, (int, float, timedelta)):
        raise TypeError(
            f"period must be a string like '10s' or '1h30m', a number of seconds or a timedelta, "
            f"got {type(period).__name__}"
        )
    if isinstance(period, float) and not math.isfinite(period):
        raise ValueError(f"period must be a finite number of seconds, got {period!r}")
    result = period if isinstance(period, timedelta) else timedelta(seconds=period)
    if result <= timedelta(0):
        raise ValueError(f"period must be positive, got {period!r}")
    return result


def parse_clock(value: str | time) -> time:
    """Turn ``"HH:MM"``, ``"HH:MM:SS"`` or a ``datetime.time`` into a ``datetime.time``."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if not isinstance(value, str):
        raise TypeError(f"a clock time must be a 'HH:MM[:SS]' string or datetime.time, got {type(value).__name__}")
    match = _CLOCK.match(value.strip())
    if match is None:
        raise ValueError(f"clock time {value!r} is not understood: use 'HH:MM' or 'HH:MM:SS', e.g. '09:30'")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"clock time {value!r} is out of range (00:00:00 to 23:59:59)")
    return time(hour, minute, second)


def parse_minute_second(value: str | int) -> tuple[int, int]:
    """Turn ``":30"``, ``"30"``, ``":30:15"`` or ``30`` (minutes past the hour) into ``(minute, second)``."""
    if isinstance(value, bool):
        raise TypeError("minutes past the hour must be a string like ':30' or an int, got bool")
    if isinstance(value, int):
        minute, second = value, 0
    elif isinstance(value, str):
        match = _MINUTE_SECOND.match(value.strip())
        if match is None:
            raise ValueError(f"minutes past the hour {value!r} not understood: use ':MM' or ':MM:SS', e.g. ':30'")
        minute, second = int(match[1]), int(match[2] or 0)
    else:
        raise TypeError(f"minutes past the hour must be a string like ':30' or an int, got {type(value).__name__}")
    if not (0 <= minute <= 59 and 0 <= second <= 59):
        raise ValueError(f"minutes past the hour {value!r} out of range (':00' to ':59:59')")
    return minute, second


def parse_weekday(value: str | int) -> int:
    """Turn ``"Monday"``, ``"mon"`` (any case) or 0..6 (Monday = 0) into 0..6."""
    if isinstance(value, bool):
        raise TypeError("weekday must be a name like 'monday' or an int 0..6, got bool")
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise ValueError(f"weekday {value} out of range: use 0 (Monday) .. 6 (Sunday)")
    if not isinstance(value, str):
        raise TypeError(f"weekday must be a name like 'monday' or an int 0..6, got {type(value).__name__}")
    key = value.strip().lower()
    for index, name in enumerate(WEEKDAY_NAMES):
        if len(key) >= 3 and name.startswith(key):
            return index
    raise ValueError(f"weekday {value!r} not understood: use one of {', '.join(WEEKDAY_NAMES)} (or 3-letter forms)")


def next_period_tick(anchor: datetime, period: timedelta, after: datetime) -> datetime:
    """First ``anchor + k * period`` (k >= 0) strictly later than ``after``.

    Ticks stay on the anchor's grid, so a late wake-up never makes the
    schedule drift.
    """
    if after < anchor:
        return anchor
    elapsed_ticks = (after - anchor) // period
    return anchor + (elapsed_ticks + 1) * period


def next_clock(at: time, after: datetime) -> datetime:
    """First moment strictly later than ``after`` whose time of day is ``at``."""
    candidate = datetime.combine(after.date(), at)
    if candidate <= after:
        candidate = datetime.combine(after.date() + _ONE_DAY, at)
    return candidate


def next_hourly(minute: int, second: int, after: datetime) -> datetime:
    """First moment strictly later than ``after`` at ``minute:second`` past some hour."""
    candidate = after.replace(minute=minute, second=second, microsecond=0)
    if candidate <= after:
        candidate += timedelta(hours=1)
    return candidate


def next_weekly(weekday: int, at: time, after: datetime) -> datetime:
    """First moment strictly later than ``after`` on ``weekday`` (Monday = 0) at ``at``."""
    days_ahead = (weekday - after.weekday()) % 7
    candidate = datetime.combine(after.date() + timedelta(days=days_ahead), at)
    if candidate <= after:
        candidate += timedelta(days=7)
    return candidate


def in_clock_window(start: time | None, end: time | None, moment: datetime) -> bool:
    """Whether ``moment``'s time of day is in ``[start, end)``.

    ``None`` leaves that side open; a window whose end is before its start
    wraps over midnight (``22:00``-``06:00``).
    """
    now = moment.time()
    if start is None and end is None:
        return True
    if start is None:
        assert end is not None
        return now < end
    if end is None:
        return now >= start
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def next_clock_window_change(start: time | None, end: time | None, after: datetime) -> datetime | None:
    """When ``in_clock_window`` may next flip, strictly after ``after`` (``None`` = never)."""
    boundaries = [b for b in (start, end) if b is not None]
    if not boundaries or start == end:
        return None
    return min(next_clock(boundary, after) for boundary in boundaries)


def in_weekday_window(first: int | None, last: int | None, moment: datetime) -> bool:
    """Whether ``moment`` falls on a day from ``first`` to ``last`` inclusive (Monday = 0).

    ``None`` leaves that side open (to Monday / to Sunday); ``first > last``
    wraps over the weekend (``friday``-``monday``).
    """
    day = moment.weekday()
    low = 0 if first is None else first
    high = 6 if last is None else last
    if low <= high:
        return low <= day <= high
    return day >= low or day <= high


def next_weekday_window_change(first: int | None, last: int | None, after: datetime) -> datetime | None:
    """Next midnight strictly after ``after`` at which ``in_weekday_window`` flips (``None`` = never)."""
    current = in_weekday_window(first, last, after)
    midnight = datetime.combine(after.date(), time(0))
    for days in range(1, 8):
        candidate = midnight + timedelta(days=days)
        if in_weekday_window(first, last, candidate) != current:
            return candidate
    return None
