"""The critical-path lines under the job table of a real run."""

from __future__ import annotations

import pytest

from pytest_executor._critical_path import CriticalPath, JobSpan
from pytest_executor._run_view import critical_path_lines

SUITE = """
import pytest

def test_first():
    pass

@pytest.mark.job(after="test_first")
def test_second():
    pass

@pytest.mark.job(after="test_second")
def test_third():
    pass
"""


def test_summary_names_the_chain_after_the_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chain=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--executor-backend=thread")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*executor jobs*",
            "critical path: 3 jobs, * busy of * wall; ideal with unlimited workers: *",
            "    test_chain.py::test_first (main/thread, *)",
            "  → test_chain.py::test_second (main/thread, *)",
            "  → test_chain.py::test_third (main/thread, *)",
            "*= 3 passed in *",
        ]
    )


def test_no_summary_with_table_none(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chain=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--executor-backend=thread", "--executor-table=none"
    )
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("critical path:*")


def test_inactive_plugin_prints_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("critical path:*")


def test_long_chains_are_cut_in_the_terminal() -> None:
    chain = tuple(JobSpan(f"t{i}", "w0", "passed", i, i + 1) for i in range(25))
    lines = critical_path_lines(CriticalPath(chain=chain, wall=25, ideal=1, ideal_chain=chain[:1]))
    assert lines[0] == (
        "critical path: 25 jobs, 25.00 s busy of 25.00 s wall; "
        "ideal with unlimited workers: 1.00 s"
    )
    assert lines[1] == "    t0 (w0, 1.00 s)"
    assert lines[-1] == "  … and 15 more"
    assert len(lines) == 12


def test_empty_chain_prints_nothing() -> None:
    assert critical_path_lines(CriticalPath(chain=(), wall=0, ideal=0, ideal_chain=())) == []
