"""The ends of ``before_*``/``between_*`` time windows are included, as in executor-engine 0.3.3.

Upstream's ``BeforeWeekday`` holds on the named day (``weekday() <= day``) and
``BeforeClock`` during the named second (it compares hours, minutes and
seconds with ``<=``); its ``between_*`` are a ``Before`` and an ``After``.
Both the condition classes and the cron helpers follow that, and a cron job
gated by ``before_weekday(today)`` runs today.
"""

from __future__ import annotations

import typing as T
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob
from executor.engine.job.condition import BeforeClock, BeforeWeekday
from executor.engine.job.extend.cron import (
    before_clock,
    before_weekday,
    between_clock,
    between_weekday,
)

pytestmark = pytest.mark.timeout(60)

MONDAY = datetime(2026, 11, 30, 12, 0, 0)  # a Monday
FRIDAY = MONDAY + timedelta(days=4)


def at(clock: str, day: datetime = MONDAY) -> datetime:
    return datetime.combine(day.date(), time.fromisoformat(clock))


@pytest.mark.parametrize("make", [BeforeWeekday, before_weekday])
def test_before_weekday_includes_the_named_day(make: T.Callable[[str], T.Any]) -> None:
    friday = make("friday")
    assert friday.holds_at(MONDAY) and friday.holds_at(FRIDAY)
    assert not friday.holds_at(FRIDAY + timedelta(days=1))
    monday = make("monday")  # only Monday, not "never"
    assert monday.holds_at(MONDAY) and not monday.holds_at(MONDAY + timedelta(days=1))


@pytest.mark.parametrize("make", [BeforeClock, before_clock])
def test_before_clock_includes_the_named_second(make: T.Callable[[str], T.Any]) -> None:
    noon = make("12:00")
    assert noon.holds_at(at("00:00:00")) and noon.holds_at(at("11:59:59.999999"))
    assert noon.holds_at(at("12:00:00")) and noon.holds_at(at("12:00:00.999999"))
    assert not noon.holds_at(at("12:00:01"))
    assert make("23:59:59").holds_at(at("23:59:59.5"))  # the last second of the day is in


def test_between_clock_and_weekday_include_both_ends() -> None:
    window = between_clock("09:00", "17:30")
    assert window.holds_at(at("09:00:00")) and window.holds_at(at("17:30:00.5"))
    assert not window.holds_at(at("08:59:59.9")) and not window.holds_at(at("17:30:01"))
    night = between_clock("22:00", "06:00")
    assert night.holds_at(at("23:00")) and night.holds_at(at("06:00:00")) and not night.holds_at(at("06:00:01"))
    one_second = between_clock("10:00", "10:00")  # upstream: satisfied during 10:00:00
    assert one_second.holds_at(at("10:00:00.3")) and not one_second.holds_at(at("10:00:01"))
    whole_day = between_clock("10:00:01", "10:00:00")
    assert all(whole_day.holds_at(at(c)) for c in ("00:00", "10:00:00.5", "10:00:01", "23:59:59"))
    assert whole_day.next_change(MONDAY.timestamp()) is None
    week = between_weekday("tue", "fri")
    assert week.holds_at(FRIDAY) and not week.holds_at(MONDAY)


def test_a_job_gated_by_todays_before_weekday_runs_today(tmp_path: Path) -> None:
    today = datetime.now().weekday()
    job = LocalJob(lambda: "ran", condition=BeforeWeekday(today))
    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        engine.submit(job)
        assert engine.wait_job(job, timeout=30) == "ran"
