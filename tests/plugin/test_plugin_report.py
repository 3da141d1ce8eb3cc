"""Acceptance: the job table (--executor-table) and the JSON report (--executor-report)."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)

SUITE = """
import pytest

def test_base():
    pass

@pytest.mark.job(after="test_base")
def test_dep():
    pass

def test_broken():
    assert False

@pytest.mark.job(after="test_broken", retries=1)
def test_blocked():
    pass
"""


def test_table_all_lists_every_job_with_its_columns(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--executor-table=all", "-v")  # -v: never shortened
    result.stdout.fnmatch_lines(
        [
            "*- executor jobs -*",
            "test * backend * worker * status * attempts * duration * wait * after",
            "test_suite.py::test_base * local * main * passed * 1 * *s * *s",
            "test_suite.py::test_dep * local * main * passed * 1 * *s * *s * test_base",
            "test_suite.py::test_broken * local * main * failed * 1 *",
            "test_suite.py::test_blocked * local * main * skipped * 1 * test_broken",
        ]
    )


def test_table_failed_and_summary_and_none(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    failed = pytester.runpytest("-p", "no:cacheprovider", "--executor-table=failed")
    failed.stdout.fnmatch_lines(["*- executor jobs -*", "test * status *", "test_suite.py::test_broken * failed *"])
    failed.stdout.no_fnmatch_line("test_suite.py::test_base *")
    summary = pytester.runpytest("-p", "no:cacheprovider")  # markers present: summary by default
    summary.stdout.fnmatch_lines(
        [
            "*- executor jobs -*",
            "backend * jobs * passed * failed * skipped * attempts * busy * workers",  # statuses that occur
            "local * 4 * 2 * 1 * 1 * 4 * *s * 1",
        ]
    )
    summary.stdout.re_match_lines([r"local +4 +2 +1 +1 +4 +"])  # jobs passed failed skipped attempts
    none = pytester.runpytest("-p", "no:cacheprovider", "--executor-table=none")
    none.stdout.no_fnmatch_line("*executor jobs*")


def test_table_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nexecutor_table = failed\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--executor-table=all")
    result.stdout.fnmatch_lines(["test_suite.py::test_base * passed *"])  # CLI beats ini
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.no_fnmatch_line("test_suite.py::test_base *")


def test_json_report_rows_and_metadata(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    target = pytester.path / "reports" / "run.json"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--executor-report={target}")
    result.stdout.fnmatch_lines([f"executor: JSON report written to {target}"])
    data = json.loads(target.read_text())
    meta = data["metadata"]
    assert meta["backend"] == "local" and meta["exitstatus"] == 1
    assert meta["counts"] == {"passed": 2, "failed": 1, "skipped": 1}
    assert meta["pytest_executor"] and meta["duration"] >= 0
    rows = {row["test"]: row for row in data["jobs"]}
    assert list(rows) == [
        "test_suite.py::test_base",
        "test_suite.py::test_dep",
        "test_suite.py::test_broken",
        "test_suite.py::test_blocked",
    ]
    blocked = rows["test_suite.py::test_blocked"]
    assert blocked["after"] == ["test_suite.py::test_broken"]
    assert blocked["status"] == "skipped"
    assert blocked["message"] == "dependency test_suite.py::test_broken failed"
    assert blocked["retries"] == 1
    base = rows["test_suite.py::test_base"]
    assert set(base) >= {"backend", "worker", "attempts", "duration", "wait", "start", "stop"}
    assert base["worker"] == "main" and base["start"] <= base["stop"]
    assert rows["test_suite.py::test_broken"]["message"] == "assert False"
