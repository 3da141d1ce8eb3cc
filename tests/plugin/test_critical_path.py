"""Unit tests of the pure critical-path computation (no pytest session needed)."""

from __future__ import annotations

import pytest

from pytest_executor._critical_path import JobSpan, critical_path


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


def test_single_worker_chain_is_the_whole_lane() -> None:
    spans = [span("a", "w0", 0, 1), span("b", "w0", 1, 3), span("c", "w0", 3, 4)]
    result = critical_path(spans)
    assert ids(result.chain) == ["a", "b", "c"]
    assert result.wall == 4.0
    # Independent jobs: with unlimited workers the longest single job bounds it.
    assert ids(result.ideal_chain) == ["b"] and result.ideal == 2.0


def test_chain_follows_the_gate_that_finished_last() -> None:
    # w1 idles until "a" (on w0) is done: c waits on its dependency, not on b.
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


def test_chain_follows_same_worker_sequencing_when_it_gates() -> None:
    # c's dependency finished early; what held c back was the busy worker w0.
    spans = [
        span("a", "w1", 0, 1),
        span("b", "w0", 0, 4),
        span("c", "w0", 4, 6, after=("a",)),
    ]
    result = critical_path(spans)
    assert ids(result.chain) == ["b", "c"]
    assert ids(result.ideal_chain) == ["b"] and result.ideal == 4.0


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
    assert ids(result.chain) == ["a", "b"]
    assert ids(result.ideal_chain) == ["a"]


def test_concurrent_jobs_on_one_worker_use_latest_stopped_predecessor() -> None:
    # A thread worker running two jobs at once: neither gates the other.
    spans = [
        span("a", "t", 0, 2),
        span("b", "t", 0.5, 1),
        span("c", "t", 2, 3),
    ]
    assert ids(critical_path(spans).chain) == ["a", "c"]


def test_small_clock_skew_between_processes_is_tolerated() -> None:
    spans = [span("a", "w0", 0, 1.0004), span("b", "w1", 1.0, 2, after=("a",))]
    assert ids(critical_path(spans).chain) == ["a", "b"]


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
    assert result.chain[-1].nodeid in {"t3998", "t3999"}
    assert len(result.chain) == 2000
    assert result.wall == 2000.0
