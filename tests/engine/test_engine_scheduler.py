"""Unit tests of the pure scheduler core: no engine, no threads, time given as numbers."""

from __future__ import annotations

import typing as T

import pytest

from executor.engine._scheduler import Scheduler


class Flag:
    """A condition whose value the test flips; declares what wakes it."""

    def __init__(self, value: bool = False, ids: T.Iterable[str] = (), at: float | None = None,
                 polled: bool = False) -> None:
        self.value = value
        self.ids = frozenset(ids)
        self.at = at
        self.polled = polled
        self.checks = 0

    def satisfy(self, engine: object) -> bool:
        self.checks += 1
        return self.value

    def waits_for(self) -> frozenset[str]:
        return self.ids

    def next_change(self, now: float) -> float | None:
        return self.at

    def needs_polling(self) -> bool:
        return self.polled


def make(max_total: int | None = None, limits: dict[str, int] | None = None,
         statuses: dict[str, str] | None = None) -> Scheduler[str]:
    limits = limits or {}
    statuses = statuses if statuses is not None else {}
    return Scheduler(None, max_total, limits.get, statuses.get)


def test_unconditional_jobs_start_in_submission_order() -> None:
    s = make()
    for key in "abc":
        s.add(key, key, "local", None, 0.0)
    assert s.take_startable() == ["a", "b", "c"]
    assert s.running_count == 3


def test_global_and_kind_limits_hold_and_release_frees_a_slot() -> None:
    s = make(max_total=3, limits={"process": 1})
    s.add("p1", "p1", "process", None, 0.0)
    s.add("p2", "p2", "process", None, 0.0)
    s.add("t1", "t1", "thread", None, 0.0)
    s.add("t2", "t2", "thread", None, 0.0)
    s.add("t3", "t3", "thread", None, 0.0)
    assert s.take_startable() == ["p1", "t1", "t2"]
    assert s.take_startable() == []
    s.finished("t1")
    assert s.take_startable() == ["t3"]  # p2 still blocked by the process limit
    s.add("t4", "t4", "thread", None, 0.0)
    s.finished("t2")
    assert s.take_startable() == ["t4"]  # global limit 3 reached again: p1, t3, t4
    s.finished("p1")
    assert s.take_startable() == ["p2"]  # the oldest ready job gets the freed slot


def test_dependency_wakes_only_on_status_change_never_polled() -> None:
    cond = Flag(ids=["up"])
    s = make()
    s.add("down", "down", "local", cond, 0.0)
    assert s.take_startable() == [] and cond.checks == 1
    assert s.next_deadline() is None  # nothing to poll
    s.advance(1000.0)
    assert cond.checks == 1
    cond.value = True
    s.job_changed("other", 1.0)
    assert cond.checks == 1  # unrelated job: not re-evaluated
    s.job_changed("up", 1.0)
    assert s.take_startable() == ["down"]


def test_time_condition_sets_a_timer_and_fires_once_due() -> None:
    cond = Flag(at=10.0)
    s = make()
    s.add("j", "j", "local", cond, 0.0)
    assert s.next_deadline() == 10.0
    s.advance(9.0)
    assert cond.checks == 1
    cond.value = True
    s.advance(10.0)
    assert s.take_startable() == ["j"]
    assert s.next_deadline() is None


def test_many_jobs_on_one_timepoint_cost_one_evaluation_each() -> None:
    conds = [Flag(at=5.0) for _ in range(500)]
    s = make()
    for i, c in enumerate(conds):
        s.add(str(i), str(i), "local", c, 0.0)
    s.advance(4.999)
    assert all(c.checks == 1 for c in conds)
    for c in conds:
        c.value = True
    s.advance(5.0)
    assert len(s.take_startable()) == 500
    assert all(c.checks == 2 for c in conds)


def test_opaque_condition_is_polled_at_its_interval() -> None:
    cond = Flag(polled=True)
    s = make()
    s.add("j", "j", "local", cond, 0.0, poll_interval=0.5)
    assert s.next_deadline() == 0.5
    s.advance(0.5)
    assert cond.checks == 2 and s.next_deadline() == 1.0
    cond.value = True
    s.advance(1.0)
    assert s.take_startable() == ["j"]


def test_upstream_failure_cancels_dependent() -> None:
    statuses = {"up": "pending"}
    s = make(statuses=statuses)
    s.add("down", "down", "local", Flag(ids=["up"]), 0.0, cancel_on=["up"])
    statuses["up"] = "failed"
    s.job_changed("up", 1.0)
    assert s.take_cancelled() == [("down", "upstream job up failed")]
    assert s.state_of("down") is None


def test_condition_that_can_never_change_cancels_the_job() -> None:
    s = make()
    s.add("j", "j", "local", Flag(value=False), 0.0)
    [(key, reason)] = s.take_cancelled()
    assert key == "j" and "never" in reason


def test_raising_condition_fails_the_job() -> None:
    class Broken(Flag):
        def satisfy(self, engine: object) -> bool:
            raise ZeroDivisionError("boom")

    s = make()
    s.add("j", "j", "local", Broken(), 0.0)
    [(key, exc)] = s.take_failed()
    assert key == "j" and isinstance(exc, ZeroDivisionError)


def test_not_before_delays_evaluation() -> None:
    s = make()
    s.add("j", "j", "local", None, 0.0, not_before=2.0)
    assert s.take_startable() == []
    s.advance(2.0)
    assert s.take_startable() == ["j"]


def test_discard_removes_waiting_and_ready_jobs_but_not_running() -> None:
    s = make(max_total=1)
    s.add("a", "a", "local", None, 0.0)
    s.add("b", "b", "local", None, 0.0)
    s.add("c", "c", "local", Flag(ids=["x"]), 0.0)
    assert s.take_startable() == ["a"]
    assert s.discard("b") and s.discard("c")
    assert not s.discard("a")
    s.finished("a")
    assert s.take_startable() == []
    s.job_changed("x", 1.0)
    assert s.take_startable() == []


def test_adding_twice_is_an_error() -> None:
    s = make()
    s.add("a", "a", "local", Flag(ids=["x"]), 0.0)
    with pytest.raises(ValueError, match="already scheduled"):
        s.add("a", "a", "local", None, 0.0)
