"""Conditions: values, the scheduling protocol, combination, and bad input."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from executor.engine.job.condition import (
    AfterAnother, AfterClock, AfterOthers, AfterTimepoint, AfterWeekday, AllSatisfied,
    AnySatisfied, BeforeClock, BeforeTimepoint, BeforeWeekday, Condition, EveryPeriod,
    parse_period,
)


class FakeJobs:
    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses

    def get(self, job_id: str) -> object:
        status = self.statuses.get(job_id)
        if status is None:
            return None
        return type("J", (), {"status": status})()


class FakeEngine:
    def __init__(self, **statuses: str) -> None:
        self.jobs = FakeJobs(statuses)


class Opaque(Condition):
    def satisfy(self, engine: object) -> bool:
        return True


def test_after_another_and_after_others() -> None:
    engine = FakeEngine(a="done", b="running", c="failed")
    assert AfterAnother(job_id="a").satisfy(engine)  # type: ignore[arg-type]
    assert not AfterAnother(job_id="b").satisfy(engine)  # type: ignore[arg-type]
    assert not AfterAnother(job_id="c", statuses=["done"]).satisfy(engine)  # type: ignore[arg-type]
    assert not AfterAnother(job_id="unknown").satisfy(engine)  # type: ignore[arg-type]
    assert AfterOthers(job_ids=["a", "c"]).satisfy(engine)  # type: ignore[arg-type]
    assert not AfterOthers(job_ids=["a", "b"]).satisfy(engine)  # type: ignore[arg-type]
    assert AfterOthers(job_ids=["a", "b"], mode="any").satisfy(engine)  # type: ignore[arg-type]
    assert AfterOthers(job_ids=["a", "b"]).waits_for() == {"a", "b"}
    assert not AfterOthers(job_ids=["a"]).needs_polling()


def test_combinations_compose_the_protocol() -> None:
    soon = datetime.now() + timedelta(hours=1)
    both = AfterAnother(job_id="a") & AfterTimepoint(timepoint=soon)
    assert isinstance(both, AllSatisfied)
    assert both.waits_for() == {"a"}
    assert both.next_change(time.time()) == pytest.approx(soon.timestamp())
    assert not both.needs_polling()
    either = AfterAnother(job_id="a") | Opaque()
    assert isinstance(either, AnySatisfied) and either.needs_polling()
    engine = FakeEngine(a="done")
    assert not both.satisfy(engine)  # type: ignore[arg-type]
    assert either.satisfy(engine)  # type: ignore[arg-type]
    assert AllSatisfied(conditions=[]).satisfy(engine)  # type: ignore[arg-type]
    assert not AnySatisfied(conditions=[]).satisfy(engine)  # type: ignore[arg-type]


def test_custom_condition_defaults_mean_poll_me() -> None:
    c = Opaque()
    assert c.needs_polling() and c.waits_for() == frozenset() and c.next_change(0.0) is None


def test_timepoints() -> None:
    past, future = datetime.now() - timedelta(seconds=5), datetime.now() + timedelta(seconds=60)
    engine = FakeEngine()
    assert AfterTimepoint(timepoint=past).satisfy(engine)  # type: ignore[arg-type]
    assert not AfterTimepoint(timepoint=future).satisfy(engine)  # type: ignore[arg-type]
    assert AfterTimepoint(timepoint=past).next_change(time.time()) is None
    assert BeforeTimepoint(timepoint=future).satisfy(engine)  # type: ignore[arg-type]
    assert not BeforeTimepoint(timepoint=past).satisfy(engine)  # type: ignore[arg-type]
    assert BeforeTimepoint(timepoint=future).next_change(time.time()) == pytest.approx(future.timestamp())


def test_every_period() -> None:
    engine = FakeEngine()
    c = EveryPeriod(period_str="1h", immediate=True)
    assert c.satisfy(engine)  # type: ignore[arg-type]  # immediate
    assert not c.satisfy(engine)  # type: ignore[arg-type]
    assert c.next_change(time.time()) == pytest.approx(time.time() + 3600, abs=5)
    c.last_submitted_at = datetime.now() - timedelta(hours=2)
    assert c.satisfy(engine)  # type: ignore[arg-type]
    lazy = EveryPeriod(period_str="10s", immediate=False)
    assert not lazy.satisfy(engine)  # type: ignore[arg-type]


def test_parse_period() -> None:
    assert parse_period("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_period("2d") == timedelta(days=2)
    assert parse_period("500ms") == timedelta(milliseconds=500)
    for bad in ("", "10", "1x", "h1", "0s"):
        with pytest.raises(ValueError):
            parse_period(bad)


def test_clock_and_weekday_conditions_agree_with_now() -> None:
    now = datetime.now()
    engine = FakeEngine()
    earlier = (now - timedelta(minutes=1)).strftime("%H:%M:%S") if now.hour or now.minute else "00:00"
    assert AfterClock(time_str="00:00").satisfy(engine)  # type: ignore[arg-type]
    assert BeforeClock(time_str="23:59:59").satisfy(engine)  # type: ignore[arg-type]  # that last second included
    assert AfterClock(time_str=earlier).satisfy(engine) or now.hour == 0  # type: ignore[arg-type]
    today = now.weekday()
    assert AfterWeekday(weekday_str=today).satisfy(engine)  # type: ignore[arg-type]
    assert BeforeWeekday(weekday_str=today).satisfy(engine)  # type: ignore[arg-type]  # the day itself included
    assert AfterWeekday(weekday_str="monday").satisfy(engine)  # type: ignore[arg-type]
    tomorrow_midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time()).timestamp()
    assert AfterWeekday(weekday_str="mon").next_change(time.time()) == pytest.approx(tomorrow_midnight)
    nxt = AfterClock(time_str="23:59:59").next_change(time.time())
    assert nxt is not None and nxt > time.time()


@pytest.mark.parametrize("make, match", [
    (lambda: AfterAnother(job_id=3), "job_id"),
    (lambda: AfterOthers(job_ids="abc"), "list of job ids"),
    (lambda: AfterOthers(job_ids=["a"], mode="some"), "mode"),
    (lambda: AfterOthers(job_ids=["a"], statuses=["finished"]), "unknown statuses"),
    (lambda: AfterTimepoint(timepoint="tomorrow"), "datetime"),
    (lambda: AllSatisfied(conditions=[1]), "Condition"),
    (lambda: AfterClock(time_str="25:00"), "HH:MM"),
    (lambda: AfterWeekday(weekday_str="funday"), "weekday"),
    (lambda: EveryPeriod(period_str="often"), "invalid period"),
    (lambda: AfterAnother(job_id="a") & 3, "Condition"),
])
def test_bad_input_is_rejected_where_made(make: object, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        make()  # type: ignore[operator]
