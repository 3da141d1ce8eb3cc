"""Acceptance: bad input is a clear usage error at collection, naming test and argument."""

from __future__ import annotations

import json
import shutil
import sys

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)


def run_bad(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_bad=source)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result


def test_unknown_after_name_suggests_close_names(pytester: pytest.Pytester) -> None:
    result = run_bad(
        pytester,
        """
        import pytest

        def test_create_user():
            pass

        @pytest.mark.job(after="test_create_usr")
        def test_login():
            pass
        """,
    )
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid job markers:",
            "*test_bad.py::test_login: job(after='test_create_usr'): 'test_create_usr' matches "
            "no test; did you mean 'test_create_user'*",
        ]
    )


def test_cycle_is_printed(pytester: pytest.Pytester) -> None:
    result = run_bad(
        pytester,
        """
        import pytest

        @pytest.mark.job(after="test_c")
        def test_a():
            pass

        @pytest.mark.job(after="test_a")
        def test_b():
            pass

        @pytest.mark.job(after="test_b")
        def test_c():
            pass
        """,
    )
    result.stderr.fnmatch_lines([
        "ERROR: invalid job markers:",
        "  dependency cycle in job(after=...): test_bad.py::test_* -> * -> * -> test_bad.py::test_*",
    ])


def test_a_cycle_is_reported_with_the_other_mistakes_at_once(pytester: pytest.Pytester) -> None:
    result = run_bad(
        pytester,
        """
        import pytest

        @pytest.mark.job(after="test_b")
        def test_a():
            pass

        @pytest.mark.job(after=["test_a", "test_nowhere"])
        def test_b():
            pass

        @pytest.mark.job(retries=-1)
        def test_c():
            pass
        """,
    )
    result.stderr.fnmatch_lines([
        "ERROR: invalid job markers:",
        "  test_bad.py::test_b: job(after='test_nowhere'): *",
        "  test_bad.py::test_c: job(retries=-1) must be an integer >= 0",
        "  dependency cycle in job(after=...): test_bad.py::test_a -> test_bad.py::test_b -> test_bad.py::test_a*",
    ])


def test_self_dependency_is_a_cycle(pytester: pytest.Pytester) -> None:
    result = run_bad(
        pytester,
        """
        import pytest

        @pytest.mark.job(after="test_a")
        def test_a():
            pass
        """,
    )
    result.stderr.fnmatch_lines(["*cycle*test_bad.py::test_a -> test_bad.py::test_a*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('backend="gpu"', "job(backend='gpu') is not a backend; valid: local, thread, process, forked, subprocess, dask"),
        ("retries=-1", "job(retries=-1) must be an integer >= 0"),
        ("timeout=-2", "job(timeout=-2) must be a positive, finite number of seconds up to 31622400 (a year), or None"),
        ("exclusive=1", "job(exclusive=1) must be True or False"),
        ("after=3", "job(after=...) must be a test name or a list of test names, got 3"),
        ("condition=42", "job(condition=42) is not an executor.engine.job.condition.Condition"),
        ("retrys=2", "job() got an unknown keyword 'retrys'; valid keywords: backend, after, *"),
        ('"test_x"', "job() takes keyword arguments only, got positional ('test_x',)"),
    ],
)
def test_bad_marker_arguments(pytester: pytest.Pytester, marker: str, message: str) -> None:
    result = run_bad(
        pytester,
        f"""
        import pytest

        @pytest.mark.job({marker})
        def test_x():
            pass
        """,
    )
    result.stderr.fnmatch_lines([f"*test_bad.py::test_x: {message}"])


def test_all_errors_are_listed_at_once(pytester: pytest.Pytester) -> None:
    result = run_bad(
        pytester,
        """
        import pytest

        @pytest.mark.job(retries=-1)
        def test_x():
            pass

        @pytest.mark.job(after="nothing_here")
        def test_y():
            pass
        """,
    )
    result.stderr.fnmatch_lines(["*test_bad.py::test_x: job(retries=-1)*", "*test_bad.py::test_y: job(after='nothing_here')*"])


def test_errors_also_under_collect_only(pytester: pytest.Pytester) -> None:
    run_bad(
        pytester,
        """
        import pytest

        @pytest.mark.job(after="missing")
        def test_x():
            pass
        """,
        "--collect-only",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor-workers", "0"], "ERROR: --executor-workers: '0' is neither a positive integer nor 'auto'*"),
        (["--executor-backend=gpu"], "ERROR: --executor-backend: 'gpu' is not one of local, thread, process, forked, subprocess, dask*"),
        (["--executor-table=some"], "ERROR: --executor-table: 'some' is not one of all, failed, summary, none*"),
        (["--executor-timeout=-1"], "ERROR: --executor-timeout: '-1' must be a positive number of seconds*"),
        (["--executor-max-jobs=x"], "ERROR: --executor-max-jobs: 'x' is not an integer*"),
        (["--executor-report=out.txt"], "ERROR: --executor-report: 'out.txt' must end with .json*"),
    ],
)
def test_bad_option_values(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nexecutor_workers = none\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: executor_workers: 'none' is neither*(option --executor-workers / ini executor_workers)"])


def test_bad_backend_from_the_select_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_executor_select_backend(item):
            return "cloud"
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", "--executor-backend=local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_*.py::test_x: pytest_executor_select_backend returned 'cloud'; valid backends: *"])


ANNOUNCE_WORKERS = """
import os
from pathlib import Path


def pytest_configure(config):
    worker = os.environ.get("PYTEST_EXECUTOR_WORKER")
    if worker:
        Path(str(config.rootpath), f"started-{worker}").touch()
"""

WAIT_FOR_A_SECOND_WORKER = """
import time
from pathlib import Path


def test_x():
    # Holds its worker for a while so that a second worker, if one was started,
    # announces itself and takes the other tests; with one worker it only waits.
    deadline = time.monotonic() + 3
    while len(list(Path(__file__).parent.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
"""


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux) to restrict the CPUs")
@pytest.mark.parametrize("workers", [[], ["--executor-workers=auto"]])
def test_workers_default_and_auto_count_the_cpus_this_process_may_use(pytester: pytest.Pytester,
                                                                       workers: list[str]) -> None:
    pytester.makeconftest(ANNOUNCE_WORKERS)
    pytester.makepyfile(test_a=WAIT_FOR_A_SECOND_WORKER, **{f"test_{name}": "def test_x(): pass" for name in "bcd"})
    report = pytester.path / "report.json"
    result = pytester.run("taskset", "-c", "0", sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          "--executor-backend=process", f"--executor-report={report}", *workers)
    assert result.ret == pytest.ExitCode.OK
    # one usable CPU: one worker, whatever os.cpu_count() says
    assert sorted(path.name for path in pytester.path.glob("started-*")) == ["started-w0"]
    jobs = json.loads(report.read_text())["jobs"]
    assert {job["worker"] for job in jobs} == {"w0"} and len(jobs) == 4


@pytest.mark.parametrize("flag", ["--setup-show", "--setup-only", "--setup-plan"])
def test_setup_display_options_are_refused_for_tests_on_workers(pytester: pytest.Pytester, flag: str) -> None:
    pytester.makepyfile(
        test_fixtures="""
        import pytest

        @pytest.fixture
        def thing():
            yield 1

        def test_here(thing):
            pass

        @pytest.mark.job(backend="process")
        def test_there(thing):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: {flag} prints fixture setup from the pytest process, but tests would run on workers, "
        "test_fixtures.py::test_there (process), whose output it cannot show: use --executor-backend=local*"
    ])
    shown = pytester.runpytest_subprocess("-p", "no:cacheprovider", flag, "-k", "test_here")
    assert shown.ret == pytest.ExitCode.OK  # in the pytest process they work as usual
    shown.stdout.fnmatch_lines(["*SETUP    F thing*"])


@pytest.mark.parametrize("backend", ["process", "forked"])
def test_a_worker_session_that_fails_before_collecting_shows_why(pytester: pytest.Pytester, backend: str) -> None:
    # the workers' terminal writes to /dev/null: the controller must show the error itself
    pytester.makeconftest(
        """
        import os

        def pytest_collection_finish(session):
            if os.environ.get("PYTEST_EXECUTOR_WORKER"):
                raise RuntimeError("this conftest breaks in workers")
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--executor-backend={backend}",
                                           "--executor-workers=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: executor backend '{backend}': a worker could not start its pytest session: "
        "an internal error in its session:",
        "*conftest.py*pytest_collection_finish*",
        "*RuntimeError: this conftest breaks in workers",
    ])


def test_a_worker_session_that_stops_before_collecting_names_its_exit_code(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import os
        import pytest

        def pytest_sessionstart(session):
            if os.environ.get("PYTEST_EXECUTOR_WORKER"):
                pytest.exit("not in a worker", returncode=2)
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--executor-backend=process",
                                           "--executor-workers=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: executor backend 'process': a worker could not start its pytest session: its pytest session "
        "ended before it had collected (exit code 2, INTERRUPTED); run the same command without "
        "--executor-backend to see why",
    ])
