"""Acceptance tests of the ``job_benchmark`` fixture in real pytest sessions (pytester).

Timings are only checked against lower bounds that physics guarantees (a
function sleeping 5 ms cannot take less than 5 ms) and against generous upper
bounds; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

NEEDS_DASK = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs the dask extra: pip install -e '.[dask]'"
)
"""The guard of the dask cases, as ``pytest.importorskip("distributed")`` guards the dask test modules."""

FAST = ("--executor-benchmark-max-time=0.02", "--executor-benchmark-min-rounds=3")
"""Keep every benchmark of these tests to a few rounds."""


@pytest.fixture(autouse=True)
def quiet_asyncio(pytester: pytest.Pytester) -> None:
    """Silence pytest-asyncio's configuration warning in the inner sessions."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def saved(pytester: pytest.Pytester, name: str) -> dict[str, dict[str, object]]:
    """Benchmark records of a saved run, by test name."""
    document = json.loads((pytester.path / ".benchmarks" / f"{name}.json").read_text())
    return {record["name"].split("::")[-1]: record for record in document["benchmarks"]}


def test_statistics_of_a_known_sleep_are_plausible(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_sleep(job_benchmark):
            assert job_benchmark(time.sleep, 0.005) is None
            stats = job_benchmark.stats
            assert stats.min >= 0.005 and stats.rounds >= 3 and stats.iterations == 1
        """
    )
    # -v: every column, however narrow the terminal
    result = pytester.runpytest(*FAST, "-v", "--executor-benchmark-save=run1", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*- job_benchmark: 1 benchmark -*",
            "benchmark * min * max * mean * stddev * median * IQR * outliers * ops/s * rounds * iterations",
            "test_statistics_of_a_known_sleep_are_plausible.py::test_sleep * ms * ms * ms *",
            "saved benchmark run 'run1' to *.benchmarks*run1.json",
        ]
    )
    record = saved(pytester, "run1")["test_sleep"]
    stats = record["stats"]
    assert isinstance(stats, dict)
    assert 0.005 <= stats["min"] <= stats["median"] <= stats["max"]
    assert stats["min"] <= stats["mean"] <= stats["max"] < 5.0
    assert stats["stddev"] >= 0 and stats["iqr"] >= 0
    assert stats["rounds"] >= 3 and stats["iterations"] == 1
    assert 0 < stats["ops"] <= 200
    assert stats["iqr_outliers"] + stats["stddev_outliers"] <= 2 * stats["rounds"]
    # The record travelled in the report's user_properties: junitxml shows it.
    junit = (pytester.path / "junit.xml").read_text()
    assert '<property name="job_benchmark" value="{' in junit


def test_fast_function_is_calibrated_and_table_is_sorted_with_units(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_slow(job_benchmark):
            job_benchmark(time.sleep, 0.002)

        def test_fast(job_benchmark):
            assert job_benchmark(sum, range(10)) == 45
            assert job_benchmark.stats.iterations > 1  # one call is far below min-time
        """
    )
    result = pytester.runpytest(*FAST, "--executor-benchmark-min-time=0.0005")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*- job_benchmark: 2 benchmarks -*",
            "*::test_fast * ?s *",  # ns or us
            "*::test_slow * ms * ms *",
        ]
    )


def test_async_benchmarks_are_awaited(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        async def work(value):
            await asyncio.sleep(0.002)
            return value * 2

        def test_sync_test_async_function(job_benchmark):
            assert job_benchmark(work, 21) == 42
            assert job_benchmark.stats.min >= 0.002

        @pytest.mark.asyncio
        async def test_async_test(job_benchmark):
            assert job_benchmark(work, 1) == 2
            assert job_benchmark.stats.min >= 0.002
            await asyncio.sleep(0)  # the test's own loop still works afterwards

        def test_pedantic_async(job_benchmark):
            assert job_benchmark.pedantic(work, args=(2,), rounds=4) == 4
            assert job_benchmark.stats.rounds == 4
        """
    )
    # A subprocess: -W error must hold from a clean start (in-process, pytest warns
    # that the outer session already imported the plugin).
    result = pytester.runpytest_subprocess(*FAST, "-W", "error", "--executor-benchmark-save=a")
    result.assert_outcomes(passed=3)
    records = saved(pytester, "a")
    assert {name: record["async"] for name, record in records.items()} == {
        "test_sync_test_async_function": True,
        "test_async_test": True,
        "test_pedantic_async": True,
    }


def test_pedantic_with_setup_and_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        log = []

        def test_pedantic(job_benchmark):
            def setup():
                data = list(range(1000, 0, -1))
                return (data,), {}

            result = job_benchmark.pedantic(
                sorted, setup=setup, teardown=lambda data: log.append(len(data)),
                rounds=5, warmup_rounds=2,
            )
            assert result[0] == 1
            assert log == [1000] * 7
            assert (job_benchmark.stats.rounds, job_benchmark.stats.iterations) == (5, 1)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_save_compare_round_trip_fails_on_a_regression(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_speed="""
        import os
        import time
        import pytest

        DELAY = float(os.environ["BENCH_DELAY"])

        def test_guarded(job_benchmark):
            job_benchmark(time.sleep, DELAY)

        @pytest.mark.job_benchmark(fail_on="mean:100000%")
        def test_tolerant(job_benchmark):
            job_benchmark(time.sleep, DELAY)
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_DELAY", "0.001")
        pytester.runpytest(*FAST, "--executor-benchmark-save=base").assert_outcomes(passed=2)
        same = pytester.runpytest(*FAST, "--executor-benchmark-compare=base", "--executor-benchmark-fail-on=mean:300%")
        same.assert_outcomes(passed=2)
        assert same.ret == pytest.ExitCode.OK
        same.stdout.fnmatch_lines(
            ["* mean vs base", "*::test_guarded * ?*%", "compared with 'base': saved 20*, Python 3.*, on * CPUs)"]
        )

        patch.setenv("BENCH_DELAY", "0.02")  # 20x slower: a deliberate regression
        slow = pytester.runpytest(
            *FAST, "--executor-benchmark-compare", "base", "--executor-benchmark-fail-on", "mean:300%, min:1000%"
        )
    slow.assert_outcomes(passed=2)
    assert slow.ret == pytest.ExitCode.TESTS_FAILED
    slow.stdout.fnmatch_lines(
        [
            "*- job_benchmark: 2 regression(s) vs 'base' -*",
            "REGRESSION test_speed.py::test_guarded: mean * ms vs baseline * ms (+*%; allowed 300% worse, rule mean:300%)",
            "REGRESSION test_speed.py::test_guarded: min * ms vs baseline * ms (+*%; allowed 1000% worse, rule min:1000%)",
        ]
    )
    slow.stdout.no_fnmatch_line("REGRESSION *test_tolerant*")
    # in-process runs may add a warnings count between the two
    slow.stdout.re_match_lines([r"=+ 2 passed, (\d+ warnings?, )?2 benchmark regressions in [\d.]+s =+$"])


def test_compare_with_an_unknown_run_lists_the_saved_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_b(job_benchmark):\n    job_benchmark(int)\n")
    pytester.runpytest(*FAST, "--executor-benchmark-save=nightly").assert_outcomes(passed=1)
    result = pytester.runpytest("--executor-benchmark-compare=nighly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--executor-benchmark-compare: no saved benchmark run 'nighly' in *.benchmarks (saved runs: nightly)*"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--executor-benchmark-compare=x", "--executor-benchmark-fail-on=mean10%"), "*malformed threshold 'mean10%'*"),
        (("--executor-benchmark-compare=x", "--executor-benchmark-fail-on=avg:5%"), "*unknown field 'avg'*"),
        (("--executor-benchmark-save=../up",), "*invalid benchmark run name '../up'*"),
        (("--executor-benchmark-min-rounds=0",), "*--executor-benchmark-min-rounds*"),
        (("--executor-benchmark-only", "--executor-benchmark-skip"), "*exclude each other*"),
        (("--executor-benchmark-fail-on=mean:5%",), "*--executor-benchmark-fail-on compares with a saved run*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    pytester.makepyfile("def test_b(job_benchmark):\n    job_benchmark(int)\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_markers_are_usage_errors_naming_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.job_benchmark(fail_on="median5%")
        def test_a(job_benchmark):
            job_benchmark(int)

        @pytest.mark.job_benchmark(rounds=3)
        def test_b(job_benchmark):
            job_benchmark(int)

        @pytest.mark.job_benchmark(min_rounds=0)
        def test_c(job_benchmark):
            job_benchmark(int)
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*invalid job_benchmark markers:",
            "*::test_a: job_benchmark(fail_on=...): malformed threshold 'median5%'*",
            "*::test_b: job_benchmark() got an unknown keyword 'rounds'; valid keywords: fail_on, group, *",
            "*::test_c: job_benchmark(): min_rounds must be >= 1, got 0",
        ]
    )


def test_bad_calls_fail_the_test_with_a_clear_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_not_callable(job_benchmark):
            job_benchmark(42)

        def test_zero_rounds(job_benchmark):
            job_benchmark.pedantic(int, rounds=0)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E * TypeError: *::test_not_callable: job_benchmark needs a callable, got int 42",
            "E * ValueError: *::test_zero_rounds: job_benchmark.pedantic rounds= must be an integer >= 1, got 0",
        ]
    )


def test_only_and_skip_select_benchmarks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plain():
            pass

        def test_bench(job_benchmark):
            job_benchmark(int)
        """
    )
    only = pytester.runpytest(*FAST, "--executor-benchmark-only", "-v")
    only.assert_outcomes(passed=1, deselected=1)
    only.stdout.fnmatch_lines(["*::test_bench PASSED*"])
    skip = pytester.runpytest(*FAST, "--executor-benchmark-skip", "-v")
    skip.assert_outcomes(passed=1, deselected=1)
    skip.stdout.fnmatch_lines(["*::test_plain PASSED*"])
    skip.stdout.no_fnmatch_line("*job_benchmark: *")


def test_only_composes_with_dependencies_and_with_deps(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_prepare():
            pass

        @pytest.mark.job(after="test_prepare")
        def test_bench(job_benchmark):
            job_benchmark(int)
        """
    )
    alone = pytester.runpytest(*FAST, "--executor-benchmark-only", "-rs")
    alone.assert_outcomes(skipped=1, deselected=1)
    alone.stdout.fnmatch_lines(["SKIPPED * dependency *::test_prepare was not selected (use --executor-with-deps*"])
    pulled = pytester.runpytest(*FAST, "--executor-benchmark-only", "--executor-with-deps")
    pulled.assert_outcomes(passed=2)


def test_benchmarks_are_in_the_json_report(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        """
        def test_bench(job_benchmark):
            job_benchmark.extra_info["size"] = 10  # filled after measuring: still saved
            job_benchmark(sum, range(10))
        """
    )
    report = tmp_path / "report.json"
    result = pytester.runpytest(*FAST, "--executor-backend=local", f"--executor-report={report}")
    result.assert_outcomes(passed=1)
    data = json.loads(report.read_text())
    (job,) = [job for job in data["jobs"] if job["test"].endswith("::test_bench")]
    benchmark = job["extra"]["benchmark"]
    assert benchmark["stats"]["rounds"] >= 3 and benchmark["extra_info"] == {"size": 10}
    assert job["exclusive"] is True
    assert data["metadata"]["benchmarks"]["count"] == 1


def test_a_plain_run_stays_plain_and_exclusive_can_be_opted_out(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_bench(job_benchmark):
            job_benchmark(int)

        @pytest.mark.job(exclusive=False)
        def test_shared(job_benchmark):
            job_benchmark(int)
        """
    )
    plain = pytester.runpytest("-k", "test_bench")
    plain.assert_outcomes(passed=1, deselected=1)
    plain.stdout.no_fnmatch_line("*executor jobs*")  # the executor did not take over
    plain.stdout.fnmatch_lines(["*- job_benchmark: 1 benchmark -*"])
    report = tmp_path / "r.json"
    pytester.runpytest(*FAST, f"--executor-report={report}").assert_outcomes(passed=2)
    exclusive = {job["test"].split("::")[-1]: job["exclusive"] for job in json.loads(report.read_text())["jobs"]}
    assert exclusive == {"test_bench": True, "test_shared": False}


def test_gc_can_be_disabled_during_rounds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import gc

        def test_gc(job_benchmark):
            seen = []
            job_benchmark.pedantic(lambda: seen.append(gc.isenabled()), rounds=3)
            assert seen == [False, False, False] and gc.isenabled()
        """
    )
    pytester.runpytest("--executor-benchmark-disable-gc").assert_outcomes(passed=1)


RECORDER = """
import contextlib
import json
import os
import time
from pathlib import Path

LOG = Path(os.environ["BENCH_LOG"])


def record(name, start):
    (LOG / f"{name}.json").write_text(json.dumps([start, time.time(), os.getpid()]))


@contextlib.contextmanager
def running(name):
    flag = LOG / f"{name}.running"  # there exactly while the block runs
    flag.touch()
    try:
        yield
    finally:
        flag.unlink()
"""

WAITER = """
import time
from recorder import LOG, record


def test_waiter():
    # Runs first and waits until a test of the other module is running: proves two workers run at once.
    start = time.time()
    deadline = time.monotonic() + 30
    while not any(LOG.glob("plain_*.running")):
        assert time.monotonic() < deadline, "no other test ran alongside test_waiter"
        time.sleep(0.005)
    record("waiter", start)
"""

EXCLUSIVE_SUITE = """
import time

import pytest
from recorder import record, running


@pytest.mark.parametrize("n", range(4))
def test_plain(n):
    start = time.time()
    with running(f"plain_{n}"):
        time.sleep(0.03)
    record(f"plain_{n}", start)


@pytest.mark.parametrize("n", range(2))
def test_bench(job_benchmark, n):
    start = time.time()
    job_benchmark.pedantic(time.sleep, args=(0.01,), rounds=4)
    record(f"bench_{n}", start)


@pytest.mark.parametrize("n", range(4, 6))
def test_more_plain(n):
    start = time.time()
    with running(f"plain_{n}"):
        time.sleep(0.03)
    record(f"plain_{n}", start)
"""


def overlaps(intervals: dict[str, list[float]], name: str) -> list[str]:
    """Names of the intervals that overlap ``name``'s."""
    start, stop = intervals[name][:2]
    return [other for other, (s, e, *_) in intervals.items() if other != name and s < stop and e > start]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "backend_args",
    [
        pytest.param(("--executor-backend=process", "--executor-workers=2"), id="process"),
        pytest.param(("--executor-backend=subprocess", "--executor-workers=2"), id="subprocess"),
        # A LocalCluster of 2 single-threaded workers on this host, started by the plugin.
        pytest.param(("--executor-backend=dask", "--executor-workers=2"), id="dask", marks=NEEDS_DASK),
        pytest.param(("--executor-backend=thread",), id="thread"),
        pytest.param(("--executor-backend=local",), id="local"),
    ],
)
def test_exclusive_benchmarks_do_not_overlap_other_jobs(
    pytester: pytest.Pytester, tmp_path: Path, backend_args: tuple[str, ...]
) -> None:
    parallel = "--executor-workers=2" in backend_args
    pytester.makepyfile(recorder=RECORDER, test_exclusive=EXCLUSIVE_SUITE)
    if parallel:  # in-process backends run one item at a time: the waiter would wait forever
        pytester.makepyfile(test_a_waiter=WAITER)
    log = tmp_path / "log"
    log.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_LOG", str(log))
        result = pytester.runpytest_subprocess(*FAST, *backend_args, "--executor-table=all")
    expected = 9 if parallel else 8
    result.assert_outcomes(passed=expected)
    result.stdout.fnmatch_lines(["*- job_benchmark: 2 benchmarks -*"])
    intervals = {path.stem: json.loads(path.read_text()) for path in log.glob("*.json")}
    assert len(intervals) == expected
    for name in ("bench_0", "bench_1"):
        assert overlaps(intervals, name) == [], f"{name} ran alongside other jobs"
    if parallel:
        assert any(name.startswith("plain_") for name in overlaps(intervals, "waiter"))  # really parallel
        assert len({pid for *_, pid in intervals.values()}) >= 2
