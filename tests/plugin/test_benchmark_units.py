"""Unit tests of the pure parts of job_benchmark: statistics, calibration, thresholds, formatting.

These use fake clocks and fake rounds, so they are exact and independent of
machine speed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_executor.benchmark._compare import find_regressions, parse_threshold, parse_thresholds
from pytest_executor.benchmark._fixture import JobBenchmark, is_async_callable
from pytest_executor.benchmark._format import format_change, format_rate, format_seconds
from pytest_executor.benchmark._stats import BenchmarkStats, compute_stats, quartiles
from pytest_executor.benchmark._storage import (
    StorageError,
    build_run,
    check_name,
    load_run,
    save_run,
    saved_names,
)
from pytest_executor.benchmark._timing import (
    TimingSettings,
    calibrate_iterations,
    clock_resolution_ns,
    measure_rounds,
    plan_rounds,
)


# -- statistics ---------------------------------------------------------------


def test_stats_of_known_rounds() -> None:
    rounds_ns = [10_000, 20_000, 30_000, 40_000, 1_000_000]
    stats = compute_stats(rounds_ns, iterations=10)
    per_call = [ns / 10 / 1e9 for ns in rounds_ns]
    assert stats.min == pytest.approx(1e-6)
    assert stats.max == pytest.approx(1e-4)
    assert stats.mean == pytest.approx(statistics.fmean(per_call))
    assert stats.stddev == pytest.approx(statistics.stdev(per_call))
    assert stats.median == pytest.approx(3e-6)
    assert (stats.q1, stats.q3) == (pytest.approx(2e-6), pytest.approx(4e-6))
    assert stats.iqr == pytest.approx(2e-6)
    # 1e-4 lies far beyond q3 + 1.5 IQR = 7e-6; only it is an outlier either way.
    assert stats.iqr_outliers == 1
    assert stats.stddev_outliers == 1
    assert stats.outliers == "1;1"
    assert stats.rounds == 5 and stats.iterations == 10
    assert stats.total == pytest.approx(sum(rounds_ns) / 1e9)
    assert stats.ops == pytest.approx(1 / stats.mean)


def test_stats_of_one_round() -> None:
    stats = compute_stats([5_000_000], iterations=1)
    assert stats.min == stats.max == stats.mean == stats.median == pytest.approx(0.005)
    assert stats.stddev == 0 and stats.iqr == 0
    assert stats.iqr_outliers == stats.stddev_outliers == 0


def test_stats_round_trip_through_json() -> None:
    stats = compute_stats([1, 2, 3, 4], iterations=1)
    data = json.loads(json.dumps(stats.to_dict()))
    assert BenchmarkStats.from_dict(data) == stats


def test_stats_with_zero_mean_have_infinite_ops_and_still_serialise() -> None:
    stats = compute_stats([0, 0], iterations=1)
    assert math.isinf(stats.ops)
    assert "ops" not in stats.to_dict()
    assert math.isinf(BenchmarkStats.from_dict(stats.to_dict()).ops)


def test_stats_reject_empty_or_bad_input() -> None:
    with pytest.raises(ValueError, match="no rounds"):
        compute_stats([], iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        compute_stats([1], iterations=0)
    with pytest.raises(ValueError, match="lack"):
        BenchmarkStats.from_dict({"min": 1})


def test_quartiles_interpolate_inclusively() -> None:
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0)


# -- calibration ----------------------------------------------------------------


class FakeRounds:
    """A round costs ``per_call_ns`` per iteration; records the iterations asked for."""

    def __init__(self, per_call_ns: int) -> None:
        self.per_call_ns = per_call_ns
        self.asked: list[int] = []

    def __call__(self, iterations: int) -> int:
        self.asked.append(iterations)
        return iterations * self.per_call_ns


def test_calibration_reaches_min_time_in_few_rounds() -> None:
    fake = FakeRounds(per_call_ns=100)
    iterations, duration = calibrate_iterations(fake, min_time_ns=1_000_000, resolution_ns=50)
    assert duration >= 1_000_000
    assert iterations * 100 == duration
    assert len(fake.asked) <= 4
    assert iterations <= 2 * 1_000_000 // 100  # not wildly more than needed


def test_calibration_keeps_one_iteration_for_slow_functions() -> None:
    fake = FakeRounds(per_call_ns=5_000_000)
    assert calibrate_iterations(fake, min_time_ns=20_000, resolution_ns=50) == (1, 5_000_000)


def test_calibration_of_a_function_too_fast_to_see_terminates() -> None:
    fake = FakeRounds(per_call_ns=0)
    iterations, _ = calibrate_iterations(fake, min_time_ns=1_000, resolution_ns=1)
    assert iterations == 10_000_000


def test_plan_rounds_fills_max_time_but_respects_min_rounds() -> None:
    settings = TimingSettings(min_rounds=5, max_time=1.0)
    assert plan_rounds(1_000_000, settings) == 1000
    assert plan_rounds(500_000_000, settings) == 5


def test_timing_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="min_rounds"):
        TimingSettings(min_rounds=0)
    with pytest.raises(ValueError, match="max_time"):
        TimingSettings(max_time=-1)
    with pytest.raises(ValueError, match="warmup_rounds"):
        TimingSettings().updated(warmup_rounds=-1)


def test_measure_rounds_runs_warmups_hooks_and_pauses_gc() -> None:
    events: list[str] = []
    gc_states: list[bool] = []

    def run_round(iterations: int) -> int:
        gc_states.append(gc.isenabled())
        events.append(f"round{iterations}")
        return 7

    durations = measure_rounds(
        run_round, 3, 2, warmup_rounds=2, disable_gc=True,
        before_round=lambda: events.append("setup"), after_round=lambda: events.append("teardown"),
    )
    assert durations == [7, 7, 7]
    assert events == ["setup", "round2", "teardown"] * 5
    assert gc_states == [True, True, False, False, False]
    assert gc.isenabled()


def test_clock_resolution_is_the_smallest_step() -> None:
    ticks: Iterator[int] = iter(range(0, 10**9, 30))
    assert clock_resolution_ns(lambda: next(ticks), samples=5) == 30


# -- the fixture object with a fake clock ------------------------------------------


class FakeClock:
    """Each read advances 1 ns; the benchmarked function advances it by its own cost."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        self.now += 1
        return self.now


def test_fixture_calibrates_returns_the_result_and_measures() -> None:
    clock = FakeClock()

    def add(a: int, b: int = 0) -> int:
        clock.now += 1_000  # each call "takes" 1 us
        return a + b

    bench = JobBenchmark("t.py::test_x", TimingSettings(min_rounds=3, max_time=0, min_time=20e-6), clock=clock)
    assert bench(add, 2, b=3) == 5
    stats = bench.stats
    assert stats is not None and stats.rounds == 3
    assert stats.iterations >= 20  # 20 us per round at least
    assert stats.min == pytest.approx(1e-6, rel=0.01)
    record = bench.to_record()
    assert record is not None and record["name"] == "t.py::test_x" and record["mode"] == "auto"


def test_fixture_measures_async_functions_on_a_private_loop() -> None:
    calls: list[int] = []

    async def work(value: int) -> int:
        await asyncio.sleep(0)
        calls.append(value)
        return value * 2

    bench = JobBenchmark("t.py::test_async", TimingSettings(min_rounds=2, max_time=0, min_time=0))
    assert is_async_callable(work)
    assert bench(work, 21) == 42
    assert calls and bench.to_record()["async"] is True  # type: ignore[index]


def test_fixture_treats_a_lambda_returning_a_coroutine_as_async() -> None:
    async def work() -> str:
        return "done"

    bench = JobBenchmark("t.py::test_lambda", TimingSettings(min_rounds=2, max_time=0, min_time=0))
    with_warnings_as_errors = bench(lambda: work())
    assert with_warnings_as_errors == "done"
    assert bench.to_record()["async"] is True  # type: ignore[index]


def test_pedantic_runs_setup_and_teardown_around_each_round() -> None:
    log: list[str] = []

    def setup() -> tuple[tuple[int], dict[str, int]]:
        log.append("setup")
        return (len(log),), {}

    bench = JobBenchmark("t.py::test_p", TimingSettings())
    def call(n: int) -> int:
        log.append(f"call{n}")
        return n

    result = bench.pedantic(
        call,
        setup=setup, teardown=lambda n: log.append(f"teardown{n}"), rounds=2, warmup_rounds=1,
    )
    assert log == ["setup", "call1", "teardown1", "setup", "call4", "teardown4", "setup", "call7", "teardown7"]
    assert result == 7
    assert bench.stats is not None and (bench.stats.rounds, bench.stats.iterations) == (2, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, r"rounds= must be an integer >= 1, got 0"),
        ({"iterations": 0}, r"iterations= must be an integer >= 1"),
        ({"warmup_rounds": -1}, r"warmup_rounds= must be an integer >= 0"),
        ({"rounds": 1.5}, r"rounds= must be an integer"),
        ({"setup": lambda: None, "iterations": 2}, r"iterations must be 1"),
        ({"teardown": 3}, r"teardown= must be callable"),
    ],
)
def test_pedantic_rejects_bad_arguments_naming_them(kwargs: dict[str, object], message: str) -> None:
    bench = JobBenchmark("t.py::test_bad", TimingSettings())
    with pytest.raises((ValueError, TypeError), match=message) as info:
        bench.pedantic(lambda: None, **kwargs)  # type: ignore[arg-type]
    assert "t.py::test_bad" in str(info.value)


def test_fixture_rejects_non_callables_and_a_second_measurement() -> None:
    bench = JobBenchmark("t.py::test_twice", TimingSettings(min_rounds=1, max_time=0))
    with pytest.raises(TypeError, match=r"t.py::test_twice: job_benchmark needs a callable, got int 3"):
        bench(3)  # type: ignore[arg-type]
    bench(lambda: None)
    with pytest.raises(RuntimeError, match="only one function per test"):
        bench(lambda: None)


# -- thresholds -------------------------------------------------------------------


def test_thresholds_parse_percentages_and_durations() -> None:
    parsed = parse_thresholds(["mean:10%, min:2ms", "median:0.5", "ops:5%"])
    assert [(t.field, t.amount, t.percent) for t in parsed] == [
        ("mean", 10.0, True), ("min", pytest.approx(0.002), False), ("median", 0.5, False), ("ops", 5.0, True),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mean10%", "malformed threshold 'mean10%'"),
        ("avg:10%", "unknown field 'avg'.*valid: min, max, mean"),
        ("mean:ten%", "malformed"),
        ("ops:3ms", "ops takes a percentage"),
    ],
)
def test_malformed_thresholds_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_threshold(spec)


def _stats(mean: float) -> BenchmarkStats:
    return compute_stats([int(mean * 1e9)] * 3, iterations=1)


def test_regressions_are_found_and_described() -> None:
    baseline, current = _stats(0.005), _stats(0.0056)
    found = find_regressions("t.py::test_sort", current, baseline, parse_thresholds(["mean:10%"]))
    assert len(found) == 1
    text = found[0].describe()
    assert text == (
        "t.py::test_sort: mean 5.600 ms vs baseline 5.000 ms (+12.0%; allowed 10% worse, rule mean:10%)"
    )
    assert not find_regressions("x", current, baseline, parse_thresholds(["mean:15%", "min:1ms"]))
    assert find_regressions("x", current, baseline, parse_thresholds(["ops:5%"]))
    assert not find_regressions("x", baseline, current, parse_thresholds(["mean:1%", "ops:1%"]))


# -- formatting -------------------------------------------------------------------


def test_units_are_scaled() -> None:
    assert format_seconds(0.005021) == "5.021 ms"
    assert format_seconds(1.5) == "1.500 s"
    assert format_seconds(2.5e-7) == "250.0 ns"
    assert format_seconds(3.2e-5) == "32.00 us"
    assert format_seconds(0) == "0 s"
    assert format_rate(199.2) == "199.2"
    assert format_rate(12345) == "12.35K"
    assert format_rate(float("inf")) == "inf"
    assert format_change(11.8) == "+11.8%"


# -- storage ---------------------------------------------------------------------


def test_saved_runs_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / ".benchmarks"
    document = build_run("base", [{"name": "t.py::test_a", "stats": _stats(0.001).to_dict()}], tmp_path)
    path = save_run(directory, document)
    assert path == directory / "base.json"
    assert saved_names(directory) == ["base"]
    loaded = load_run(directory, "base")
    assert loaded["benchmarks"][0]["name"] == "t.py::test_a"
    assert loaded["machine"]["python_version"]
    assert loaded["commit"] is None  # tmp_path is not a git checkout
    assert [p.name for p in directory.iterdir()] == ["base.json"]


def test_missing_saved_run_lists_the_saved_ones(tmp_path: Path) -> None:
    save_run(tmp_path, build_run("one", [], tmp_path))
    with pytest.raises(StorageError, match=r"no saved benchmark run 'two' .*\(saved runs: one\)"):
        load_run(tmp_path, "two")


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x.json", "-x"])
def test_run_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="invalid benchmark run name"):
        check_name(name)


def test_saved_runs_record_the_git_commit(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.fail("git is needed to test commit ids")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    commit = build_run("r", [], tmp_path)["commit"]
    assert commit == {"id": head, "branch": commit["branch"], "dirty": False}
    (tmp_path / "f.txt").write_text("changed")
    assert build_run("r", [], tmp_path)["commit"]["dirty"] is True


def test_table_rows_are_sorted_by_group_then_mean_with_a_change_column() -> None:
    from pytest_executor.benchmark._table import benchmark_rows, render_benchmarks

    def record(name: str, mean: float, group: str | None = None) -> dict[str, object]:
        return {"name": name, "group": group, "stats": _stats(mean).to_dict()}

    records = [record("t::slow", 0.002), record("t::fast", 0.000001), record("t::grouped", 0.0000005, "g")]
    rows = benchmark_rows(records, baseline={"t::slow": record("t::slow", 0.001)})
    assert [row[0] for row in rows] == ["t::fast", "t::slow", "t::grouped [g]"]
    assert rows[0][3] == "1.000 us" and rows[1][3] == "2.000 ms"
    assert [row[-1] for row in rows] == ["new", "+100.0%", "new"]
    text = render_benchmarks(records, None)
    assert text.splitlines()[0].split() == [
        "benchmark", "min", "max", "mean", "stddev", "median", "IQR", "outliers", "ops/s", "rounds", "iterations",
    ]


def test_async_benchmark_leaves_no_thread_behind() -> None:
    import threading

    async def uses_executor() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, int, "7")

    before = set(threading.enumerate())
    bench = JobBenchmark("t.py::test_threads", TimingSettings(min_rounds=2, max_time=0))
    assert bench(uses_executor) == 7
    assert set(threading.enumerate()) <= before
