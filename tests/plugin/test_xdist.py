"""Acceptance tests of the pytest-xdist integration (real ``pytest -n`` sessions).

The inner tests log when and where they ran (:mod:`_xdist_log`); the assertions
read the log, so ordering is checked on what really happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from _xdist_log import LOGGED_CHAIN, Log, write_suite

pytest.importorskip("xdist")

pytestmark = pytest.mark.timeout(120)

CHAIN_SUITE = LOGGED_CHAIN + '''

@pytest.mark.job(after=["test_a", "test_free[3]"])
def test_joins_two_workers():
    pass


@pytest.mark.job(exclusive=True)
def test_alone():
    pass


@pytest.mark.parametrize("n", range(8))
def test_free(n):
    pass


def test_engine_fixture(engine):
    from executor.engine import LocalJob

    job = LocalJob(lambda: 41 + 1)
    engine.submit(job)
    engine.wait_job(job)
    assert job.result() == 42
'''


@pytest.mark.parametrize("workers", ["2", "4"])
def test_chain_exclusive_and_engine_fixture_under_n(pytester: pytest.Pytester, workers: str) -> None:
    log_path = write_suite(pytester, test_chain=CHAIN_SUITE)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-n", workers, "-p", "no:cacheprovider", "--executor-table=all",
        f"--executor-report={report}",
    )
    result.assert_outcomes(passed=14)
    result.stdout.fnmatch_lines([
        "executor: dependency-aware xdist scheduling (3 tests with after=, 1 exclusive)",
        "*executor jobs*",
        "test_chain.py::test_b *gw* passed *test_a",  # the backend column (xdist) only when the table fits
    ])
    log = Log.read(log_path)
    assert log.before("test_a", "test_b") and log.before("test_b", "test_c")
    assert log.before("test_a", "test_joins_two_workers")
    assert log.before("test_free[3]", "test_joins_two_workers")
    assert log.overlaps("test_alone") == []
    assert len({span.worker for span in log.spans.values()}) >= 2
    data = json.loads(report.read_text())
    jobs = {job["test"]: job for job in data["jobs"]}
    assert len(jobs) == 14 and data["metadata"]["counts"] == {"passed": 14}
    for name, span in log.spans.items():
        assert jobs[f"test_chain.py::{name}"]["worker"] == span.worker
    assert jobs["test_chain.py::test_alone"]["exclusive"] is True


FAILING_SUITE = '''
import pytest


def test_a():
    assert False, "a breaks"


@pytest.mark.job(after="test_a")
def test_b():
    pass


@pytest.mark.job(after="test_b")
def test_c():
    pass


@pytest.mark.parametrize("n", range(4))
def test_free(n):
    pass
'''


def test_failed_dependency_skips_dependents_with_the_serial_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING_SUITE)
    expected = [
        "SKIPPED [[]1[]] test_failing.py:*: dependency test_failing.py::test_a failed",
        "SKIPPED [[]1[]] test_failing.py:*: dependency test_failing.py::test_b was skipped",
    ]
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    serial.assert_outcomes(passed=4, failed=1, skipped=2)
    serial.stdout.fnmatch_lines(expected, consecutive=False)
    parallel = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rs")
    parallel.assert_outcomes(passed=4, failed=1, skipped=2)
    parallel.stdout.fnmatch_lines(expected, consecutive=False)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            '''
import pytest

@pytest.mark.job(after="test_y")
def test_x():
    pass

@pytest.mark.job(after="test_x")
def test_y():
    pass
''',
            "  dependency cycle in job(after=...): *test_x -> *test_y -> *test_x*",
        ),
        (
            '''
import pytest

@pytest.mark.job(after="test_nope")
def test_x():
    pass

def test_one():
    pass
''',
            "ERROR: invalid job markers:\n"
            "  *test_x: job(after='test_nope'): 'test_nope' matches no test; did you mean 'test_one'*",
        ),
    ],
    ids=["cycle", "unknown-name"],
)
def test_bad_graph_errors_as_without_xdist(pytester: pytest.Pytester, source: str, message: str) -> None:
    pytester.makepyfile(test_bad=source)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    parallel = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    for result in (serial, parallel):
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(message.split("\n"))
    assert error_block(serial) == error_block(parallel)


def error_block(result: pytest.RunResult) -> list[str]:
    """The ``ERROR: ...`` lines pytest printed (up to the next blank line)."""
    lines = result.stderr.lines
    start = next(n for n, line in enumerate(lines) if line.startswith("ERROR:"))
    end = next((n for n in range(start, len(lines)) if not lines[n].strip()), len(lines))
    return lines[start:end]


SCOPE_SUITE_A = '''
import pytest
from logger import note


@pytest.fixture(autouse=True)
def log_span(request):
    note(request.node.nodeid, "start")
    yield
    note(request.node.nodeid, "end")


class TestFirst:
    @pytest.mark.parametrize("n", range(3))
    def test_one(self, n):
        pass


class TestSecond:
    @pytest.mark.job(after="test_scope_b.py::test_base")
    def test_needs_b(self):
        pass

    def test_two(self):
        pass
'''

SCOPE_SUITE_B = '''
import pytest
from logger import note


@pytest.fixture(autouse=True)
def log_span(request):
    note(request.node.nodeid, "start")
    yield
    note(request.node.nodeid, "end")


def test_base():
    pass


@pytest.mark.job(after="test_scope_a.py::TestFirst")
def test_after_class():
    pass


@pytest.mark.parametrize("n", range(3))
def test_more(n):
    pass
'''


@pytest.mark.parametrize("dist", ["loadscope", "loadfile"])
def test_loadscope_and_loadfile_keep_groups_on_one_worker(pytester: pytest.Pytester, dist: str) -> None:
    log_path = write_suite(pytester, test_scope_a=SCOPE_SUITE_A, test_scope_b=SCOPE_SUITE_B)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", dist, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines([f"executor: dependency-aware xdist scheduling (*); --dist {dist} groups each stay on one worker"])
    log = Log.read(log_path)
    groups: dict[str, set[str]] = defaultdict(set)
    for nodeid, span in log.spans.items():
        scope = nodeid.split("::")[0] if dist == "loadfile" else nodeid.split("[")[0].rsplit("::", 1)[0]
        groups[scope].add(span.worker)
    assert all(len(workers) == 1 for workers in groups.values()), groups
    assert log.before("test_scope_b.py::test_base", "test_scope_a.py::TestSecond::test_needs_b")
    for n in range(3):
        assert log.before(f"test_scope_a.py::TestFirst::test_one[{n}]", "test_scope_b.py::test_after_class")


def test_executor_backend_with_n_is_a_usage_error_naming_what_to_drop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(): pass")
    result = pytester.runpytest_subprocess("-n", "2", "--executor-backend=process", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --executor-backend=process cannot be combined with pytest-xdist's -n/--dist: "
        "xdist already runs the tests in its worker processes. Drop --executor-backend to run "
        "under xdist, or drop -n *"
    ])


def test_unmarked_suite_under_n_is_plain_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="import pytest\n@pytest.mark.parametrize('n', range(6))\ndef test_x(n): pass")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    assert "executor:" not in result.stdout.str()
    assert "executor jobs" not in result.stdout.str()
    assert not list(Path(pytester.path).glob("*.json"))


def test_without_xdist_markers_still_order_the_run(pytester: pytest.Pytester) -> None:
    log_path = write_suite(pytester, test_chain=CHAIN_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=14)
    log = Log.read(log_path)
    assert log.before("test_a", "test_b") and log.before("test_b", "test_c")
    assert {span.worker for span in log.spans.values()} == {"main"}


def test_importing_the_plugin_does_not_import_xdist() -> None:
    code = (
        "import sys, pytest_executor.plugin, pytest_executor.xdist;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('xdist', 'execnet')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


STOP_SUITE = '''
import pytest


def test_fail():
    assert False


def test_y():
    pass


def test_z():
    pass


@pytest.mark.job(after=["test_y", "test_z"])
def test_x():
    pass
'''


@pytest.mark.timeout(60)
def test_stop_at_first_failure_releases_tests_waiting_on_the_stopped_worker(
    pytester: pytest.Pytester,
) -> None:
    # test_x waits on one worker for test_z, queued behind test_fail on the other
    pytester.makepyfile(test_stop=STOP_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-x", "-p", "no:cacheprovider", "-rs")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # xdist's answer to -x
    result.assert_outcomes(failed=1, passed=1, skipped=1)  # test_fail, test_y, test_x
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] test_stop.py:*: dependency test_stop.py::test_z did not run",
        "*stopping after 1 failures*",
    ], consecutive=False)


CRASH_SUITE = '''
import os
import pytest


def test_a():
    os._exit(3)


@pytest.mark.job(after="test_a")
def test_b():
    pass


@pytest.mark.parametrize("n", range(4))
def test_free(n):
    pass


@pytest.mark.job(after="test_free")
def test_last():
    pass
'''


def test_crashed_worker_fails_its_test_and_skips_its_dependents(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_crash=CRASH_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "*worker 'gw*' crashed while running 'test_crash.py::test_a'*",
        "SKIPPED [[]1[]] test_crash.py:*: dependency test_crash.py::test_a failed",
    ], consecutive=False)

