"""Acceptance: retries, thread backend and timeouts, conditions, exclusive, hooks, mixed runs."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)

WORKER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""
"""Inner sessions on worker backends: only the plugins they need, so workers start quickly."""


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
    if xdist:  # -v under xdist: "[gw0] [ 33%] PASSED test_x.py::test_flaky", in completion order
        result.stdout.fnmatch_lines_random([
            "[[]gw?[]] [[]*[]] PASSED *::test_flaky*",
            "[[]gw?[]] [[]*[]] FAILED *::test_always_fails*",
            "[[]gw?[]] [[]*[]] PASSED *::test_after_flaky*",
        ])
    else:
        result.stdout.fnmatch_lines(["*::test_flaky PASSED*", "*::test_always_fails FAILED*"])
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


HELD_IN_PAIRS = """
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TOTAL = 6


def count(pattern):
    return len(list(HERE.glob(pattern)))


@pytest.mark.parametrize("n", range(TOTAL))
@pytest.mark.job(backend="process")
def test_on_process(n):
    hold(f"p{n}")


@pytest.mark.parametrize("n", range(TOTAL))
@pytest.mark.job(backend="subprocess")
def test_on_subprocess(n):
    hold(f"s{n}")


def hold(name):
    mine = HERE / f"running-{name}"
    mine.touch()
    try:
        # Wait for a partner (unless every other test is done): proves two run at once.
        deadline = time.monotonic() + 30
        while count("running-*") < 2 and count("done-*") < 2 * TOTAL - 1:
            assert time.monotonic() < deadline, "no other test ran alongside this one"
            time.sleep(0.01)
        # Then watch a while: with the limit broken a third test would start now.
        peak, window = count("running-*"), time.monotonic() + 0.3
        while time.monotonic() < window:
            peak = max(peak, count("running-*"))
            time.sleep(0.01)
        (HERE / f"peak-{name}").write_text(str(peak))
    finally:
        mine.unlink()
        (HERE / f"done-{name}").touch()
"""


@pytest.mark.timeout(120)
def test_max_jobs_bounds_the_tests_running_at_once_across_worker_backends(pytester: pytest.Pytester) -> None:
    """Two pools of two workers each, ``--executor-max-jobs=2``: never more than two tests at once."""
    pytester.makeini(WORKER_INI)
    pytester.makepyfile(test_held=HELD_IN_PAIRS)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "--executor-workers=2", "--executor-max-jobs=2", f"--executor-report={report}"
    )
    result.assert_outcomes(passed=12)
    peaks = [int(path.read_text()) for path in pytester.path.glob("peak-*")]
    assert len(peaks) == 12 and max(peaks) == 2, peaks  # two at once, never three
    jobs = json.loads(report.read_text())["jobs"]
    assert {(job["backend"], job["worker"][0]) for job in jobs} == {("process", "w"), ("subprocess", "s")}


def test_hooks_see_every_job(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        seen = []

        def pytest_executor_select_backend(item):
            return "thread" if "threaded" in item.name else None

        def pytest_executor_job_created(item, job):
            seen.append(("created", item.name, job.backend, job.status))

        def pytest_executor_job_finished(item, job, report):
            seen.append(("finished", item.name, job.outcome, report.when if report else None))

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


@pytest.mark.parametrize("backend", ["local", "subprocess"])
def test_hooks_receive_the_engine_job_with_its_attempts_and_reports(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeini(WORKER_INI)
    pytester.makeconftest(
        """
        from executor.engine.job.base import Job

        def pytest_executor_job_created(item, job):
            assert isinstance(job, Job) and job.status == "created"
            print("CREATED", job.nodeid, job.backend, job.retries)

        def pytest_executor_job_finished(item, job, report):
            phases = [[r.when for r in attempt] for attempt in job.reports]
            print("FINISHED", job.nodeid, job.status, job.outcome, job.attempts, phases)
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from pathlib import Path

        @pytest.mark.job(retries=1)
        def test_flaky(tmp_path_factory):
            mark = Path(tmp_path_factory.getbasetemp().parent) / "flaky-mark"
            if not mark.exists():
                mark.write_text("x")
                assert False
        def test_fails():
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-s", f"--executor-backend={backend}", "--executor-table=none")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            f"CREATED test_hooks_receive_the_engine_job_with_its_attempts_and_reports.py::test_flaky {backend} 1",
            "*FINISHED *::test_flaky done passed 2 ??'setup', 'call', 'teardown'?, ?'setup', 'call', 'teardown'??",
            "*FINISHED *::test_fails failed failed 1 ??'setup', 'call', 'teardown'??",
        ]
    )
    assert "retry" not in result.stderr.str() and "Traceback" not in result.stderr.str()  # the engine stays quiet


def test_remote_and_local_test_jobs_take_the_engines_direct_path_not_upstreams_hooks() -> None:
    """Upstream's hooks (resources, process_func, resolve_args, run) cost every test's attempt steps it never uses."""
    from executor.engine.job._upstream_api import uses_upstream_hooks

    from pytest_executor.run.jobs import LocalTestJob, RemoteTestJob

    assert not uses_upstream_hooks(RemoteTestJob)
    assert not uses_upstream_hooks(LocalTestJob)
