"""Acceptance: retries, thread backend and timeouts, conditions, exclusive, hooks, mixed runs."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("xdist", [False, True], ids=["local", "xdist"])
def test_retries_rerun_a_failing_test_and_keep_every_attempt(pytester: pytest.Pytester, xdist: bool) -> None:
    pytester.makepyfile(
        """
        import pytest
        attempts = []

        @pytest.fixture
        def counted():
            attempts.append("setup")
            yield len(attempts)

        @pytest.mark.job(retries=3)
        def test_flaky(counted):
            assert counted >= 3, f"attempt {counted}"

        @pytest.mark.job(retries=1)
        def test_always_fails():
            assert False, "nope"

        @pytest.mark.job(after="test_flaky")
        def test_after_flaky():
            pass
        """
    )
    report = pytester.path / "run.json"
    args = ("-p", "no:cacheprovider", f"--executor-report={report}", "-v")
    if xdist:  # the attempts run on an xdist worker; the controller's report must still keep them all
        pytest.importorskip("xdist")
        result = pytester.runpytest_subprocess("-n", "2", *args)
    else:
        result = pytester.runpytest(*args)
    # Only the final attempt reaches the terminal (and junit): one failure in total.
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*PASSED*", "*FAILED*test_always_fails*"] if xdist else
                                ["*::test_flaky PASSED*", "*::test_always_fails FAILED*"])
    jobs = {job["test"].split("::")[-1]: job for job in json.loads(report.read_text())["jobs"]}
    flaky = jobs["test_flaky"]
    assert [(a["attempt"], a["status"]) for a in flaky["attempts"]] == [(1, "failed"), (2, "failed"), (3, "passed")]
    assert flaky["attempts"][0]["message"] == "AssertionError: attempt 1"
    assert {a["worker"] for a in flaky["attempts"]} == {flaky["worker"]}
    assert flaky["worker"].startswith("gw") == xdist
    assert [a["status"] for a in jobs["test_always_fails"]["attempts"]] == ["failed", "failed"]
    assert jobs["test_after_flaky"]["status"] == "passed"


def test_thread_backend_fails_a_hung_test_on_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading
        import pytest

        never = threading.Event()

        @pytest.mark.job(timeout=0.3)
        def test_hangs():
            never.wait(30)

        def test_on_thread():
            assert threading.current_thread() is not threading.main_thread()

        def test_raises():
            raise ValueError("from the thread")

        def test_last():
            never.set()  # let the abandoned thread go
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--executor-backend=thread", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "timed out after 0.3s (job timeout); the test's thread was abandoned",
            "E       ValueError: from the thread",
        ]
    )


def test_default_timeout_option_applies_to_local_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading
        never = threading.Event()

        def test_hangs():
            never.wait(30)

        def test_release():
            never.set()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--executor-timeout=0.3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.3s*"])


def test_condition_is_evaluated_by_the_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        from datetime import datetime, timedelta
        import pytest
        from executor.engine.job.condition import AfterTimepoint

        START = datetime.now()

        @pytest.mark.job(condition=AfterTimepoint(timepoint=START + timedelta(seconds=0.3)))
        def test_timed():
            assert datetime.now() >= START + timedelta(seconds=0.3)

        def test_other():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_exclusive_and_max_jobs_accepted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.job(exclusive=True)
        def test_alone():
            pass

        def test_other():
            pass
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "--executor-max-jobs=1").assert_outcomes(passed=2)


def test_hooks_see_every_job(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        seen = []

        def pytest_executor_select_backend(item):
            return "thread" if "threaded" in item.name else None

        def pytest_executor_job_created(item, job):
            seen.append(("created", item.name, job.backend, job.status))

        def pytest_executor_job_finished(item, job, report):
            seen.append(("finished", item.name, job.status, report.when if report else None))

        def pytest_sessionfinish(session):
            for entry in seen:
                print("SEEN", *entry)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.job()
        def test_plain():
            pass

        def test_threaded():
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SEEN created test_plain local created",
            "SEEN created test_threaded thread created",
            "SEEN finished test_plain passed call",
            "SEEN finished test_threaded failed call",
        ]
    )
