"""Bad input is a clean usage error at start-up, never a traceback, INTERNALERROR or fork bomb."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:cacheprovider
"""


def _no_crash(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text, text


@pytest.mark.parametrize(
    ("value", "shown"),
    [('float("inf")', "inf"), ("1e300", "1e+300"), ("10**400", "1000000000000000000000000000000000000...")],
)
@pytest.mark.parametrize("backend", ["local", "thread"])
def test_absurd_timeouts_are_usage_errors_naming_the_test(
    pytester: pytest.Pytester, value: str, shown: str, backend: str
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_t=f"""
        import pytest

        @pytest.mark.job(timeout={value})
        def test_forever():
            pass
        """
    )
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}")
    _no_crash(result)
    result.stderr.fnmatch_lines(
        [f"*test_t.py::test_forever: job(timeout={shown}) must be a positive, finite number of seconds up to 31622400 (a year), or None*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_absurd_default_timeout_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-timeout=1e300")
    _no_crash(result)
    result.stderr.fnmatch_lines(["*--executor-timeout: '1e300' must be a positive number of seconds, at most 31622400 (a year)*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("benchmarks", "problem"),
    [
        ([1, 2], "benchmarks[[]0[]]: must be an object, got int"),
        ({"a": 1}, "'benchmarks' must be a list, got dict"),
        ([{"name": "t"}], "benchmarks[[]0[]]: 'stats' must be an object, got NoneType"),
        ([{"name": "t", "stats": {"mean": "fast"}}], "benchmarks[[]0[]]: stats 'min' must be a number, got None"),
        ([{"name": "t", "stats": None}], "benchmarks[[]0[]]: 'stats' must be an object, got NoneType"),
    ],
)
def test_baseline_with_wrong_types_is_refused_at_start_up(
    pytester: pytest.Pytester, benchmarks: object, problem: str
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_b="def test_one(job_benchmark):\n    job_benchmark(int)\n")
    store = pytester.path / ".benchmarks"
    store.mkdir()
    (store / "base.json").write_text(
        json.dumps({"format": "pytest-executor-benchmarks/1", "name": "base", "benchmarks": benchmarks})
    )
    result = pytester.runpytest_subprocess("--executor-benchmark-compare=base")
    _no_crash(result)
    result.stderr.fnmatch_lines([f"*--executor-benchmark-compare: *base.json is not a valid saved benchmark run: {problem}"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_mean_that_is_text_is_named(pytester: pytest.Pytester) -> None:
    fields = ["min", "max", "mean", "stddev", "median", "q1", "q3", "iqr", "iqr_outliers",
              "stddev_outliers", "rounds", "iterations", "total", "ops"]
    stats: dict[str, object] = {name: 1 for name in fields}
    stats["mean"] = "fast"
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_b="def test_one(job_benchmark):\n    job_benchmark(int)\n")
    (pytester.path / ".benchmarks").mkdir()
    (pytester.path / ".benchmarks" / "base.json").write_text(json.dumps(
        {"format": "pytest-executor-benchmarks/1", "name": "base", "benchmarks": [{"name": "x", "stats": stats}]}))
    result = pytester.runpytest_subprocess("--executor-benchmark-compare=base")
    _no_crash(result)
    result.stderr.fnmatch_lines(["*benchmarks[[]0[]]: stats 'mean' must be a number, got 'fast'"])


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_unwritable_report_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    locked = pytester.path / "locked"
    locked.mkdir(mode=0o500)
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess(f"--executor-report={locked}/r.json")
    _no_crash(result)
    result.stderr.fnmatch_lines([f"*--executor-report {locked}/r.json: cannot write there: the directory {locked} is not writable"])


def test_report_path_under_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "plain").write_text("a file, not a directory")
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-report=plain/sub/r.json")
    _no_crash(result)
    result.stderr.fnmatch_lines([f"*--executor-report plain/sub/r.json: cannot write there: {pytester.path}/plain is not a directory"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_report_that_becomes_unwritable_during_the_run_is_one_line_and_keeps_the_exit_code(
    pytester: pytest.Pytester,
) -> None:
    """The directory is replaced by a file while the tests run: a line at the end, the tests' exit code."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_t="""
        import shutil
        from pathlib import Path

        def test_breaks_the_report_dir():
            shutil.rmtree("out")
            Path("out").write_text("now a file")

        def test_fails():
            assert False
        """
    )
    (pytester.path / "out").mkdir()
    result = pytester.runpytest_subprocess("--executor-report=out/r.json", "-p", "no:randomly")
    _no_crash(result)
    result.stdout.fnmatch_lines(["executor: cannot write the JSON report out/r.json: *"])
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_workers_beyond_the_machine_are_refused_with_the_limit(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-backend=process", "--executor-workers=99999999999")
    _no_crash(result)
    result.stderr.fnmatch_lines(
        ["*--executor-workers=99999999999 exceeds the limit of * workers on this machine (*); "
         "pass --executor-workers-max=99999999999 to run that many anyway"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_workers_max_lifts_the_cap(pytester: pytest.Pytester) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    many = 4 * cpus + 1
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    refused = pytester.runpytest_subprocess("--executor-backend=local", f"--executor-workers={many}")
    refused.stderr.fnmatch_lines([f"*--executor-workers={many} exceeds the limit of *"])
    lifted = pytester.runpytest_subprocess(
        "--executor-backend=local", f"--executor-workers={many}", f"--executor-workers-max={many}"
    )
    lifted.assert_outcomes(passed=1)
    over = pytester.runpytest_subprocess("--executor-workers=5", "--executor-workers-max=4")
    over.stderr.fnmatch_lines(["*--executor-workers=5 exceeds --executor-workers-max=4*"])


def test_json_report_is_still_written_normally(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_t="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-report=deep/er/r.json")
    result.stdout.fnmatch_lines(["executor: JSON report written to deep/er/r.json"])
    assert json.loads((pytester.path / "deep" / "er" / "r.json").read_text())
