"""The pure scheduler's exclusive jobs: they run alone, and once ready they are a barrier for younger jobs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from executor.engine._scheduler import Scheduler


def make(max_total: int | None = None) -> Scheduler[str]:
    return Scheduler(None, max_total, {}.get, {}.get)


def test_an_exclusive_job_waits_for_older_ones_then_runs_alone_then_younger_ones_start() -> None:
    s = make()
    s.add("a", "a", "thread", None, 0.0)
    s.add("b", "b", "process", None, 0.0)
    s.add("x", "x", "thread", None, 0.0, exclusive=True)
    s.add("c", "c", "thread", None, 0.0)
    assert s.take_startable() == ["a", "b"]  # c is younger than the ready exclusive job: it waits
    s.finished("a")
    assert s.take_startable() == []  # b still runs
    s.finished("b")
    assert s.take_startable() == ["x"]
    s.add("d", "d", "local", None, 0.0)
    assert s.take_startable() == []  # nothing starts while x runs
    s.finished("x")
    assert s.take_startable() == ["c", "d"]


def test_a_discarded_exclusive_job_lifts_its_barrier() -> None:
    s = make()
    s.add("a", "a", "thread", None, 0.0)
    s.add("x", "x", "thread", None, 0.0, exclusive=True)
    s.add("c", "c", "thread", None, 0.0)
    assert s.take_startable() == ["a"]
    assert s.discard("x")
    assert s.take_startable() == ["c"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["thread", "process", "local"])), min_size=1, max_size=12),
       st.integers(min_value=1, max_value=4), st.randoms(use_true_random=False))
def test_exclusive_jobs_never_overlap_anything_and_every_job_runs(
        jobs: list[tuple[bool, str]], max_total: int, rnd: object) -> None:
    s = make(max_total)
    exclusive = {f"j{i}" for i, (excl, _) in enumerate(jobs) if excl}
    for i, (excl, kind) in enumerate(jobs):
        s.add(f"j{i}", f"j{i}", kind, None, 0.0, exclusive=excl)
    running: list[str] = []
    ran: list[str] = []
    while len(ran) < len(jobs):
        started = s.take_startable()
        running += started
        ran += started
        assert len(running) <= max_total
        if any(key in exclusive for key in running):
            assert len(running) == 1, running
        assert running, "no job runs and none can start: the scheduler is stuck"
        done = running.pop(rnd.randrange(len(running)))  # type: ignore[attr-defined]
        s.finished(done)
    assert sorted(ran) == sorted(f"j{i}" for i in range(len(jobs)))
