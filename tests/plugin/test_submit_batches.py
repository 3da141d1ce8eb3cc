"""Acceptance: with runners, the controller submits the jobs a batch at a time while the first tests run.

Each run is a real ``pytest`` subprocess on the ``process`` backend, with more
tests than one batch (:data:`pytest_executor.run.controller.SUBMIT_BATCH`).
"""

from __future__ import annotations

import json
import re

import pytest

from pytest_executor.run.controller import SUBMIT_BATCH

pytestmark = pytest.mark.timeout(120)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""
TESTS = 3 * SUBMIT_BATCH + 10

COUNTING_CONFTEST = """
import os

_jobs = []
_at_first_task = []


def pytest_configure(config):
    if os.environ.get("PYTEST_EXECUTOR_WORKER"):
        return
    from pytest_executor.backends.process import ProcessRunner

    submit = ProcessRunner.submit

    def observed(self, task):  # counts, then does what it always does
        if not _at_first_task:
            _at_first_task.append(sum(job.status == "created" for job in _jobs))
        return submit(self, task)

    ProcessRunner.submit = observed


def pytest_executor_job_created(item, job):
    _jobs.append(job)


def pytest_terminal_summary(terminalreporter):
    if _at_first_task:
        terminalreporter.write_line(f"unsubmitted at the first task: {_at_first_task[0]} of {len(_jobs)}")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INNER_INI)
    return pytester


def test_the_first_test_goes_to_a_worker_before_every_job_is_submitted(suite: pytest.Pytester) -> None:
    suite.makeconftest(COUNTING_CONFTEST)
    suite.makepyfile(test_many=f"""
        import pytest

        @pytest.mark.parametrize("n", range({TESTS}))
        def test_n(n):
            pass
    """)
    result = suite.runpytest_subprocess("--executor-backend=process", "--executor-workers=1")
    result.assert_outcomes(passed=TESTS)
    result.stdout.fnmatch_lines([f"unsubmitted at the first task: * of {TESTS}"])
    match = re.search(r"unsubmitted at the first task: (\d+) of", result.stdout.str())
    assert match is not None
    assert int(match.group(1)) == TESTS - SUBMIT_BATCH, "the first test waited for more than the first batch"


def test_dependencies_across_batches_hold(suite: pytest.Pytester) -> None:
    last = TESTS - 1
    suite.makepyfile(test_deps=f"""
        import pytest

        def test_first():
            pass

        def test_broken():
            assert 0

        @pytest.mark.parametrize("n", range({TESTS}))
        def test_filler(n):
            pass

        @pytest.mark.job(after="test_first")
        def test_after_first():
            pass

        @pytest.mark.job(after="test_broken")
        def test_after_broken():
            pass

        @pytest.mark.job(after="test_filler[{last}]")
        def test_after_the_last_filler():
            pass
    """)
    result = suite.runpytest_subprocess("--executor-backend=process", "--executor-workers=2", "-rs")
    result.assert_outcomes(passed=TESTS + 3, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_deps.py:*: dependency test_deps.py::test_broken failed"])


def test_exitfirst_cancels_the_jobs_not_yet_submitted(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_stop="""
        def test_bad():
            assert 0
    """, test_zrest=f"""
        import pytest

        @pytest.mark.parametrize("n", range({TESTS}))
        def test_rest(n):
            pass
    """)
    report = suite.path / "report.json"
    result = suite.runpytest_subprocess("--executor-backend=process", "--executor-workers=1", "-x",
                                        f"--executor-report={report}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    jobs = json.loads(report.read_text())["jobs"]
    assert len(jobs) == TESTS + 1
    statuses = [job["status"] for job in jobs]
    assert jobs[0]["test"] == "test_stop.py::test_bad"
    assert jobs[0]["status"] == "failed", "the test that stopped the run is recorded as it ended"
    assert [attempt["status"] for attempt in jobs[0]["attempts"]] == ["failed"]
    assert statuses.count("cancelled") >= TESTS - SUBMIT_BATCH, statuses
    assert set(statuses) <= {"failed", "passed", "cancelled"}
