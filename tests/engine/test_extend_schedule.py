"""Pure calendar rules of the cron helpers: parsing and next-fire computation."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executor.engine.job.extend import _schedule as s
from executor.engine.job.extend._cron_conditions import (
    ClockWindow,
    DailyTick,
    EveryTick,
    HourlyTick,
    WeekdayWindow,
    WeeklyTick,
    consume_ticks,
)

MONDAY = datetime(2024, 1, 1)  # 2024-01-01 is a Monday
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("500ms", 0.5), (3, 3), (0.25, 0.25)],
)
def test_parse_period_accepts_units_and_numbers(text: str | float, seconds: float) -> None:
    assert s.parse_period(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "10", "1x", "abc", "0s", -1, 0])
def test_parse_period_rejects_nonsense_with_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        s.parse_period(bad)  # type: ignore[arg-type]


def test_parse_period_rejects_wrong_type() -> None:
    with pytest.raises(TypeError, match="period"):
        s.parse_period([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "want"), [("9:30", time(9, 30)), ("23:59:59", time(23, 59, 59)),
                                              (time(1, 2), time(1, 2))])
def test_parse_clock(text: str | time, want: time) -> None:
    assert s.parse_clock(text) == want


@pytest.mark.parametrize("bad", ["24:00", "12:60", "noon", "12", "1:2:3:4"])
def test_parse_clock_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="clock time"):
        s.parse_clock(bad)


@pytest.mark.parametrize(("value", "want"), [("Monday", 0), ("fri", 4), ("SUN", 6), (2, 2)])
def test_parse_weekday(value: str | int, want: int) -> None:
    assert s.parse_weekday(value) == want


@pytest.mark.parametrize("bad", ["mo", "funday", 7, -1])
def test_parse_weekday_rejects(bad: str | int) -> None:
    with pytest.raises(ValueError, match="weekday"):
        s.parse_weekday(bad)


@pytest.mark.parametrize(("value", "want"), [(":30", (30, 0)), ("5", (5, 0)), (":07:15", (7, 15)), (59, (59, 0))])
def test_parse_minute_second(value: str | int, want: tuple[int, int]) -> None:
    assert s.parse_minute_second(value) == want


def test_next_period_tick_stays_on_the_grid() -> None:
    anchor = MONDAY
    period = timedelta(minutes=10)
    assert s.next_period_tick(anchor, period, anchor - timedelta(seconds=1)) == anchor
    assert s.next_period_tick(anchor, period, anchor) == anchor + period
    # a late wake-up (25 min) lands on the next grid point, not 10 min after waking
    assert s.next_period_tick(anchor, period, anchor + timedelta(minutes=25)) == anchor + timedelta(minutes=30)


@given(moments, st.integers(min_value=1, max_value=10**6))
def test_next_period_tick_is_first_grid_point_after(after: datetime, seconds: int) -> None:
    period = timedelta(seconds=seconds)
    tick = s.next_period_tick(MONDAY, period, after)
    assert tick > after and (tick - MONDAY) % period == timedelta(0)
    assert tick - period <= after or tick == MONDAY


@given(moments, st.times())
def test_next_clock_is_within_a_day_and_on_time(after: datetime, at: time) -> None:
    fire = s.next_clock(at, after)
    assert after < fire <= after + timedelta(days=1)
    assert fire.time() == at


@given(moments, st.integers(0, 59), st.integers(0, 59))
def test_next_hourly(after: datetime, minute: int, second: int) -> None:
    fire = s.next_hourly(minute, second, after)
    assert after < fire <= after + timedelta(hours=1)
    assert (fire.minute, fire.second, fire.microsecond) == (minute, second, 0)


@given(moments, st.integers(0, 6), st.times())
def test_next_weekly(after: datetime, weekday: int, at: time) -> None:
    fire = s.next_weekly(weekday, at, after)
    assert after < fire <= after + timedelta(days=7)
    assert fire.weekday() == weekday and fire.time() == at


def test_clock_window_plain_and_wrapping() -> None:
    day = MONDAY
    assert s.in_clock_window(time(9), time(18), day.replace(hour=9))
    assert not s.in_clock_window(time(9), time(18), day.replace(hour=18))
    assert s.in_clock_window(time(22), time(6), day.replace(hour=23))
    assert s.in_clock_window(time(22), time(6), day.replace(hour=5))
    assert not s.in_clock_window(time(22), time(6), day.replace(hour=12))
    assert s.in_clock_window(None, time(6), day.replace(hour=5))
    assert s.in_clock_window(time(6), None, day.replace(hour=23))


@given(moments, st.times(), st.times())
def test_clock_window_value_is_constant_until_next_change(after: datetime, start: time, end: time) -> None:
    change = s.next_clock_window_change(start, end, after)
    if change is None:
        assert start == end
        return
    before = s.in_clock_window(start, end, after)
    assert s.in_clock_window(start, end, change - timedelta(microseconds=1)) == before
    assert change > after


@given(moments, st.one_of(st.none(), st.integers(0, 6)), st.one_of(st.none(), st.integers(0, 6)))
def test_weekday_window_changes_at_reported_midnight(after: datetime, first: int | None, last: int | None) -> None:
    change = s.next_weekday_window_change(first, last, after)
    value = s.in_weekday_window(first, last, after)
    if change is None:
        for day in range(7):
            assert s.in_weekday_window(first, last, after + timedelta(days=day)) == value
        return
    assert change.time() == time(0) and change > after
    assert s.in_weekday_window(first, last, change) != value
    assert s.in_weekday_window(first, last, change - timedelta(microseconds=1)) == value


def test_weekday_window_wraps_over_weekend() -> None:
    friday, sunday, tuesday = MONDAY + timedelta(days=4), MONDAY + timedelta(days=6), MONDAY + timedelta(days=1)
    assert s.in_weekday_window(4, 0, friday) and s.in_weekday_window(4, 0, sunday)
    assert s.in_weekday_window(4, 0, MONDAY) and not s.in_weekday_window(4, 0, tuesday)


# ------------------------------------------------------------------ tick conditions

def test_every_tick_is_due_at_once_when_immediate_then_each_period() -> None:
    tick = EveryTick("10s")
    tick.arm(MONDAY)
    assert tick.is_due(MONDAY)
    tick.consume(MONDAY)
    assert tick.due_at == MONDAY + timedelta(seconds=10)
    assert not tick.is_due(MONDAY + timedelta(seconds=9))
    # consuming a late fire skips the missed ones and keeps the grid
    tick.consume(MONDAY + timedelta(seconds=35))
    assert tick.due_at == MONDAY + timedelta(seconds=40)


def test_every_tick_not_immediate_waits_one_period() -> None:
    tick = EveryTick(5, immediate=False)
    tick.arm(MONDAY)
    assert not tick.is_due(MONDAY)
    assert tick.due_at == MONDAY + timedelta(seconds=5)


def test_tick_next_change_is_the_fire_time_then_none_while_due() -> None:
    tick = DailyTick("12:00")
    tick.arm(MONDAY)
    assert tick.next_change(MONDAY.timestamp()) == MONDAY.replace(hour=12).timestamp()
    assert tick.next_change(MONDAY.replace(hour=13).timestamp()) is None


def test_consume_ticks_walks_combinations_and_leaves_windows() -> None:
    tick = HourlyTick(":30")
    window = ClockWindow("09:00", "18:00")
    combined = tick & window
    tick.arm(MONDAY)
    assert tick.due_at == MONDAY.replace(minute=30)
    consume_ticks(combined, MONDAY.replace(minute=31))
    assert tick.due_at == MONDAY.replace(hour=1, minute=30)


def test_weekly_tick_and_windows_validate_input() -> None:
    assert WeeklyTick("wed", "08:00").next_fire(MONDAY) == MONDAY + timedelta(days=2, hours=8)
    with pytest.raises(ValueError, match="weekday"):
        WeeklyTick("someday", "08:00")
    with pytest.raises(ValueError, match="clock window"):
        ClockWindow(None, None)
    with pytest.raises(ValueError, match="weekday window"):
        WeekdayWindow(None, None)
    with pytest.raises(TypeError, match="immediate"):
        EveryTick("1s", immediate="yes")  # type: ignore[arg-type]
