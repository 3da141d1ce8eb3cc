"""Unit tests of the pure critical-path computation (no pytest session needed)."""

from __future__ import annotations

import pytest

from pytest_executor.views._critical_path import JobSpan, critical_path


def span(
    nodeid: str,
    worker: str,
    start: float,
    stop: float,
    after: tuple[str, ...] = (),
    outcome: str = "passed",
) -> JobSpan:
    return JobSpan(
        nodeid=nodeid, worker=worker, outcome=outcome, start=start, stop=stop, after=after
    )


def ids(spans: tuple[JobSpan, ...]) -> list[str]:
    return [s.nodeid for s in spans]


def test_empty_run_has_no_chain() -> None:
    result = critical_path([])
    assert result.chain == () and result.ideal_chain == ()
    assert result.wall == 0.0 and result.ideal == 0.0


def test_without_dependencies_the_path_is_the_longest_test_not_a_lane() -> None:
    spans = [span("a", "w0", 0, 1), span("b", "w0", 1, 3), span("c", "w0", 3, 4)]
    result = critical_path(spans)
    assert ids(result.chain) == ["b"] and result.ideal == 2.0
    assert result.wall == 4.0


def test_chain_follows_dependencies() -> None:
    spans = [
        span("a", "w0", 0, 3),
        span("b", "w1", 0, 1),
        span("c", "w1", 3, 5, after=("a",)),
        span("d", "w0", 3, 4),
    ]
    result = critical_path(spans)
    assert ids(result.chain) == ["a", "c"]
    assert result.wall == 5.0 and result.busy == 5.0
    assert ids(result.ideal_chain) == ["a", "c"] and result.ideal == 5.0
    assert result.nodeids == frozenset({"a", "c"})


def test_wall_time_is_busy_plus_waiting_plus_scheduling() -> None:
    # one worker: c (after a) waited 1 s for the worker busy with b; then x ran alone
    spans = [
        span("a", "w0", 0, 1),
        span("b", "w0", 1, 2),
        JobSpan("c", "w0", "passed", 2.25, 4, wait=1.0, after=("a",)),
        JobSpan("x", "w0", "passed", 4, 5, exclusive=True),
    ]
    result = critical_path(spans)
    assert ids(result.chain) == ["a", "c"]
    assert result.busy == pytest.approx(2.75)
    assert result.waiting_worker == pytest.approx(1.0)  # c's wait, from 1.25 to 2.25
    assert result.waiting_exclusive == pytest.approx(1.0)  # after c, x ran alone
    assert result.scheduling == pytest.approx(0.25)  # c was ready at 1.25, a stopped at 1
    total = result.busy + result.waiting_worker + result.waiting_exclusive + result.scheduling
    assert total == pytest.approx(result.wall)


def test_ideal_is_longest_dependency_chain_by_duration() -> None:
    spans = [
        span("a", "w0", 0, 1),
        span("b", "w0", 1, 2, after=("a",)),
        span("c", "w0", 2, 3, after=("b",)),
        span("long", "w1", 0, 2.5),
    ]
    result = critical_path(spans)
    assert ids(result.ideal_chain) == ["a", "b", "c"]
    assert result.ideal == pytest.approx(3.0)


def test_unknown_dependencies_are_ignored() -> None:
    spans = [span("a", "w0", 0, 1, after=("deselected",)), span("b", "w0", 1, 1.5)]
    result = critical_path(spans)
    assert ids(result.chain) == ["a"]


def test_cycle_is_a_clear_error() -> None:
    spans = [span("a", "w0", 0, 1, after=("b",)), span("b", "w0", 1, 2, after=("a",))]
    with pytest.raises(ValueError, match="dependency cycle: .*a.*b"):
        critical_path(spans)


def test_duplicate_nodeid_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="share the node id 'a'"):
        critical_path([span("a", "w0", 0, 1), span("a", "w1", 0, 1)])


def test_negative_duration_counts_as_zero() -> None:
    assert span("a", "w0", 2, 1).duration == 0.0


def test_large_run_is_linear_enough() -> None:
    # 4000 jobs on 2 workers with a dependency every 10th job: must stay quick
    # (the test timeout catches a quadratic blow-up, not a wall-clock assert).
    spans = []
    for i in range(4000):
        worker = f"w{i % 2}"
        start = float(i // 2)
        after = (f"t{i - 10}",) if i % 10 == 0 and i >= 10 else ()
        spans.append(span(f"t{i}", worker, start, start + 1, after=after))
    result = critical_path(spans)
    assert ids(result.chain) == [f"t{i}" for i in range(0, 4000, 10)]
    assert result.wall == 2000.0


def test_a_kept_together_group_is_one_link_of_the_path() -> None:
    # --dist loadfile: the module's tests ran in sequence, whatever the number of workers
    spans = [
        JobSpan("m.py::a", "gw0", "passed", 0, 1, group="m.py"),
        JobSpan("m.py::b", "gw0", "passed", 1, 2, group="m.py"),
        JobSpan("m.py::c", "gw0", "passed", 2, 3, group="m.py"),
        JobSpan("n.py::long", "gw1", "passed", 0, 2.5, group="n.py"),
    ]
    result = critical_path(spans)
    assert ids(result.chain) == ["m.py::a", "m.py::b", "m.py::c"]
    assert result.ideal == 3.0
