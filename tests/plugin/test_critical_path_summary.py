"""The critical-path lines under the job table of a real run."""

from __future__ import annotations

import pytest

from pytest_executor.views._critical_path import CriticalPath, JobSpan
from pytest_executor.views._run_view import critical_path_lines, worker_time_line

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


FROZEN_CLOCK = """
import pytest
import _pytest.timing

@pytest.fixture
def frozen(monkeypatch):
    # what freezegun does to pytest's clock: the reports are stamped in 2011
    monkeypatch.setattr(_pytest.timing, "time", lambda: 1308900000.0)

def test_frozen(frozen):
    pass

@pytest.mark.job(after="test_frozen")
def test_after_it():
    pass
"""


@pytest.mark.parametrize("backend", ["local", "process"])
def test_a_test_that_freezes_the_clock_keeps_the_summary_in_run_time(pytester: pytest.Pytester, backend: str) -> None:
    """Reports stamped by a faked clock give way to the controller's record of the job."""
    pytester.makepyfile(test_clock=FROZEN_CLOCK)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--executor-backend={backend}")
    result.assert_outcomes(passed=2)
    wall = [line for line in result.stdout.lines if line.startswith("wall ")]
    assert len(wall) == 1, result.stdout.str()
    # a span in 2011 made this read "wall 8125562m 53s = ..."
    assert "m " not in wall[0] and " s = " not in wall[0], wall[0]
    result.stdout.fnmatch_lines(["critical path: 2 jobs, * ms busy (ideal wall time with unlimited workers)"])


def test_summary_names_the_chain_after_the_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chain=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--executor-backend=thread")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*executor jobs*",
            "critical path: 3 jobs, * busy (ideal wall time with unlimited workers)",
            "wall * = * busy + * waiting for a free worker",
            "  + * waiting for an exclusive slot + * scheduling",
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


def test_long_chains_keep_their_longest_jobs_in_order() -> None:
    # 25 jobs of 1 s, except t3 and t20 which take 5 s.
    chain = tuple(
        JobSpan(f"t{i}", "w0", "passed", 10.0 * i, 10.0 * i + (5 if i in (3, 20) else 1))
        for i in range(25)
    )
    lines = critical_path_lines(CriticalPath(chain=chain, wall=250, ideal=5, ideal_chain=chain[3:4]))
    assert lines[:3] == [
        "critical path: 25 jobs, 33.00 s busy (ideal wall time with unlimited workers)",
        "wall 4m 10s = 33.00 s busy + 0.0 ms waiting for a free worker",
        "  + 0.0 ms waiting for an exclusive slot + 0.0 ms scheduling",
    ]
    shown = [line.split()[-4] for line in lines[3:] if "(w0," in line]
    assert shown == ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t20"]
    assert lines[3] == "    t0 (w0, 1.00 s)"
    assert "  → t3 (w0, 5.00 s)" in lines
    assert lines[-3:] == [
        "  … 11 shorter jobs (11.00 s)",
        "  → t20 (w0, 5.00 s)",
        "  … 4 shorter jobs (4.00 s)",
    ]


def test_short_chains_are_listed_whole() -> None:
    chain = tuple(JobSpan(f"t{i}", "w0", "passed", i, i + 1) for i in range(3))
    lines = critical_path_lines(CriticalPath(chain=chain, wall=3, ideal=1, ideal_chain=chain[:1]))
    assert lines[3:] == ["    t0 (w0, 1.00 s)", "  → t1 (w0, 1.00 s)", "  → t2 (w0, 1.00 s)"]


def test_empty_chain_prints_nothing() -> None:
    assert critical_path_lines(CriticalPath(chain=(), wall=0, ideal=0, ideal_chain=())) == []


def _lane(worker: str, backend: str, starts: list[float], phase: float) -> list[JobSpan]:
    return [JobSpan(f"{worker}-{i}", worker, "passed", t, t + phase, call=phase, backend=backend) for i, t in enumerate(starts)]


def test_worker_time_line_shows_what_surrounds_the_tests_when_it_weighs() -> None:
    # two forked workers, each 10 tests of 10 ms every 100 ms: 90 % of their time is around the tests
    spans = _lane("f0", "forked", [0.1 * i for i in range(10)], 0.01) + _lane("f1", "forked", [0.1 * i for i in range(10)], 0.01)
    assert worker_time_line(spans) == (
        "worker time 1.82 s = 200 ms in test phases + 1.62 s between them (each test's start, fork or reports, or no work)"
    )
    busy = _lane("w0", "process", [0.1 * i for i in range(10)], 0.09)  # 90 % in the tests: nothing to say
    assert worker_time_line(busy) is None
    local = _lane("main", "local", [0.1 * i for i in range(10)], 0.01)  # the controller's own lane
    assert worker_time_line(local) is None
    one_each = [JobSpan(f"s{i}", f"s{i}", "passed", i, i + 0.001, call=0.001, backend="subprocess") for i in range(10)]
    assert worker_time_line(one_each) is None


AROUND_THE_PHASES = """
import os
import time


def pytest_runtest_logfinish(nodeid, location):
    if os.environ.get("PYTEST_EXECUTOR_WORKER"):  # in the forked child, after its teardown
        time.sleep(0.06)  # a cost outside the test's phases, as a fork's is: not a synchronisation
"""


def test_a_forked_run_says_where_its_workers_time_went(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(AROUND_THE_PHASES)
    pytester.makepyfile(test_many="import pytest\n\n@pytest.mark.parametrize('n', range(20))\ndef test_n(n):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--executor-backend=forked", "--executor-workers=2")
    result.assert_outcomes(passed=20)
    result.stdout.fnmatch_lines([
        "wall * = * busy + * waiting for a free worker",
        "worker time * = * in test phases + * between them (each test's start, fork or reports, or no work)",
    ])
