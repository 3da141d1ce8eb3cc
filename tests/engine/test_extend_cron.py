"""SentinelJob and CronJob on a real engine: what fires, when it stops, how it wakes."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pytest

from executor.engine import Engine, EngineSetting, ThreadJob
from executor.engine.job.condition import AfterAnother, AfterTimepoint, Condition, EveryPeriod
from executor.engine.job.extend import (
    CronJob,
    SentinelJob,
    SubprocessJob,
    after_clock,
    before_weekday,
    between_clock,
    daily,
    every,
    hourly,
    weekly,
)
from executor.engine.job.extend.sentinel import _next_wake_delay

from _extend_helpers import wait_until


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as eng:
        yield eng


def test_cron_every_fires_then_stops_after_max_fires(engine: Engine) -> None:
    hits: list[float] = []
    cron = CronJob(lambda: hits.append(time.monotonic()), every("50ms"), job_type="local", max_fires=3)
    engine.submit(cron)
    engine.wait_job(cron, timeout=10)
    assert cron.status == "done" and len(cron.result()) == 3
    assert all(job.status == "done" for job in cron.fired_jobs)
    assert [job.id for job in cron.fired_jobs] == cron.result()
    assert len(hits) == 3 and not engine._status_listeners  # its status listener is gone


def test_cron_arguments_and_job_kwargs_reach_the_fired_jobs(engine: Engine) -> None:
    cron = CronJob(pow, every(0.01), job_type="thread", args=(2,), kwargs={"exp": 5},
                   job_kwargs={"name": "power"}, max_fires=2)
    engine.submit(cron)
    engine.wait_job(cron, timeout=10)
    engine.wait(timeout=10)
    assert [(type(j), j.name, j.result()) for j in cron.fired_jobs] == [(ThreadJob, "power", 32)] * 2


def test_cron_runs_commands_with_subprocess_job_type(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    cron = CronJob(f"echo tick >> {log}", every("10ms"), job_type="subprocess", max_fires=2)
    engine.submit(cron)
    engine.wait_job(cron, timeout=10)
    engine.wait(timeout=10)
    assert all(isinstance(j, SubprocessJob) for j in cron.fired_jobs)
    assert log.read_text() == "tick\ntick\n"


def test_sentinel_fires_each_time_the_watched_job_finishes(engine: Engine) -> None:
    release = threading.Event()
    gate = ThreadJob(release.wait)
    sentinel = SentinelJob(lambda: "seen", AfterAnother(job_id=gate.id), job_type="local", max_fires=2)
    engine.submit(gate, sentinel)
    assert sentinel.fired_jobs == []
    release.set()
    assert wait_until(lambda: len(sentinel.fired_jobs) == 1)
    # the gate stays done: no second fire until it becomes false and true again
    engine.wait_job(gate, timeout=10)
    assert len(sentinel.fired_jobs) == 1 and sentinel.status == "running"
    engine.submit(gate)  # rerun: pending/running (false) then done (true)
    engine.wait_job(sentinel, timeout=10)
    assert sentinel.status == "done" and len(sentinel.fired_jobs) == 2


class Flag(Condition):
    """An opaque condition: the engine can only poll it."""

    def __init__(self) -> None:
        self.value = False
        self.checks = 0

    def satisfy(self, engine: object) -> bool:
        self.checks += 1
        return self.value


def test_opaque_condition_is_polled_and_fires_on_each_rise(engine: Engine) -> None:
    flag = Flag()
    sentinel = SentinelJob(lambda: None, flag, job_type="local", wait_time_delta=0.005)
    engine.submit(sentinel)
    flag.value = True
    assert wait_until(lambda: len(sentinel.fired_jobs) == 1)
    seen = flag.checks
    assert wait_until(lambda: flag.checks >= seen + 5)
    assert len(sentinel.fired_jobs) == 1  # staying true is not a new rise
    flag.value = False
    assert wait_until(lambda: flag.checks >= seen + 10)
    flag.value = True
    assert wait_until(lambda: len(sentinel.fired_jobs) == 2)
    engine.cancel(sentinel)
    assert sentinel.status == "cancelled" and not engine._status_listeners


def test_condition_that_can_never_change_again_ends_the_sentinel(engine: Engine) -> None:
    past = AfterTimepoint(timepoint=datetime.now() - timedelta(seconds=1))
    sentinel = SentinelJob(lambda: 1, past, job_type="local")
    engine.submit(sentinel)
    engine.wait_job(sentinel, timeout=10)
    assert sentinel.status == "done" and len(sentinel.result()) == 1


def test_engine_every_period_is_a_tick_too(engine: Engine) -> None:
    cron = CronJob(lambda: None, EveryPeriod("20ms"), job_type="local", max_fires=3)
    engine.submit(cron)
    engine.wait_job(cron, timeout=10)
    assert cron.status == "done" and len(cron.result()) == 3


def test_waiting_for_a_distant_schedule_sleeps_until_it() -> None:
    """Not polling: the next wake-up is the next fire time or window edge."""
    tick = daily(at=(datetime.now() + timedelta(hours=2)).strftime("%H:%M"))
    delay = _next_wake_delay(tick, poll_interval=0.01)
    assert delay is not None and 3600 < delay <= 7200
    window = between_clock("00:00", "23:59:59") & hourly(at=":00")
    delay = _next_wake_delay(window, poll_interval=0.01)
    assert delay is not None and 0 < delay <= 3600
    assert _next_wake_delay(Flag(), poll_interval=0.25) == pytest.approx(0.25, abs=0.05)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: CronJob(print, "1h"), TypeError, "time_period must be a schedule"),
        (lambda: SentinelJob(print, None), TypeError, "sentinel_condition must be a Condition"),  # type: ignore[arg-type]
        (lambda: CronJob(print, every("1s"), max_fires=0), ValueError, "max_fires"),
        (lambda: CronJob(print, every("1s"), job_type="gpu"), ValueError, "job_type must be one of"),
        (lambda: CronJob(print, every("1s"), job_type="subprocess"), TypeError, "command string"),
        (lambda: CronJob("ls", every("1s")), TypeError, "func must be callable"),
        (lambda: every("soon"), ValueError, "period"),
        (lambda: daily(at="25:00"), ValueError, "out of range"),
        (lambda: weekly(on="funday"), ValueError, "weekday"),
        (lambda: after_clock(930), TypeError, "clock time"),
        (lambda: every(float("nan")), ValueError, "period must be a finite number of seconds"),
        (lambda: every(float("inf")), ValueError, "period must be a finite number of seconds"),
        # the jobs a sentinel submits are checked when it is made, not when it first fires
        (lambda: CronJob(abs, every("1s"), job_type="thread", job_kwargs={"retires": 1}), TypeError,
         "job_kwargs.*retires"),
        (lambda: CronJob(abs, every("1s"), job_type="thread", job_kwargs=["retries"]), TypeError,
         "job_kwargs must be a dict"),
        (lambda: CronJob(abs, every("1s"), job_type="thread", args="-3"), TypeError, "args must be a tuple or list"),
        (lambda: CronJob("true", every("1s"), job_type="subprocess", job_kwargs={"target_dir": 3}), TypeError,
         "target_dir"),
    ],
)
def test_bad_schedules_are_refused_clearly(call: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()  # type: ignore[operator]


def test_sentinel_serializes_without_the_jobs_it_fired(engine: Engine) -> None:
    cron = CronJob(abs, every("10ms"), job_type="local", args=(-3,), max_fires=1)
    engine.submit(cron)
    engine.wait_job(cron, timeout=10)
    clone = CronJob.deserialization(cron.serialization())
    assert isinstance(clone, CronJob) and clone.fired_jobs == [] and clone.result() == cron.result()
