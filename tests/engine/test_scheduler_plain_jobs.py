"""The scheduler's entry-free path for jobs with nothing to evaluate, mixed with conditioned jobs.

Pure unit tests (no engine, time as numbers), plus one check that a large
submit of such jobs allocates no garbage-collected object per job.
"""

from __future__ import annotations

import gc

import pytest

from executor.engine._scheduler import Scheduler


class Gate:
    """A condition that holds once ``open`` is set; woken by job ``ids``."""

    def __init__(self, *ids: str) -> None:
        self.open = False
        self.ids = frozenset(ids)

    def satisfy(self, engine: object) -> bool:
        return self.open

    def waits_for(self) -> frozenset[str]:
        return self.ids

    def next_change(self, now: float) -> float | None:
        return None

    def needs_polling(self) -> bool:
        return False


def make(max_total: int | None = None, limits: dict[str, int] | None = None) -> Scheduler[str]:
    limits = limits or {}
    return Scheduler(None, max_total, limits.get, {}.get)


def test_plain_and_conditioned_jobs_start_in_submission_order_across_kinds() -> None:
    s = make()
    s.add("p1", "p1", "thread", None, 0.0)
    s.add("c1", "c1", "local", Gate(), 0.0, cancel_on=["up"])  # an entry: it has something to evaluate
    s.add("p2", "p2", "local", None, 0.0)
    s.add("c2", "c2", "thread", None, 0.0, not_before=5.0)  # a retry delay: an entry with a timer
    assert s.take_startable() == ["p1", "p2"]
    s.advance(5.0)
    assert s.take_startable() == ["c2"]
    assert s.state_of("p1") == "running" and s.state_of("c1") == "waiting"


def test_a_discarded_plain_job_never_starts_and_a_resubmitted_one_starts_once() -> None:
    s = make(max_total=1)
    for key in ("a", "b", "c"):
        s.add(key, key, "local", None, 0.0)
    assert s.take_startable() == ["a"]
    assert s.discard("b") is True and s.state_of("b") is None
    assert s.discard("a") is False  # running: only finished() frees it
    s.add("b", "b", "local", None, 0.0)  # submitted again: queued behind c
    s.finished("a")
    assert s.take_startable() == ["c"]
    s.finished("c")
    assert s.take_startable() == ["b"]
    s.finished("b")
    assert s.take_startable() == [] and s.running_count == 0


def test_plain_jobs_respect_kind_limits_and_finished_frees_the_slot() -> None:
    s = make(limits={"process": 2})
    for i in range(4):
        s.add(f"p{i}", f"p{i}", "process", None, 0.0)
    s.add("t", "t", "thread", None, 0.0)
    assert s.take_startable() == ["p0", "p1", "t"]
    assert s.running_of("process") == 2
    s.finished("p1")
    assert s.take_startable() == ["p2"]
    s.finished("p1")  # twice: no effect
    assert s.running_of("process") == 2


def test_adding_a_scheduled_plain_job_again_is_an_error() -> None:
    s = make()
    s.add("a", "a", "local", None, 0.0)
    with pytest.raises(ValueError, match="job a is already scheduled"):
        s.add("a", "a", "local", None, 0.0)


def _tracked_objects_of_a_large_submit(keys: list[str]) -> tuple[list[str], int]:
    s = make()
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for key in keys:
            s.add(key, key, "local", None, 0.0)
        started = s.take_startable()
        return started, gc.get_count()[0] - before
    finally:
        gc.enable()


def test_a_large_plain_submit_allocates_no_tracked_object_per_job() -> None:
    keys = [f"job{i}" for i in range(20000)]
    # gc's counter is process-wide: a thread left by an earlier test may allocate meanwhile,
    # so the least of three runs is the scheduler's own count.
    runs = [_tracked_objects_of_a_large_submit(keys) for _ in range(3)]
    assert all(started == keys for started, _ in runs)
    added = min(count for _, count in runs)
    assert added < 100  # a few containers, not one per job
