"""Acceptance: ``--executor-fork-shared`` shares opted-in session fixtures copy-on-write (forked backend)."""

from __future__ import annotations

import os

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked backend needs os.fork"),
]

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider -p no:randomly
"""

CONFTEST = """
import os
import threading
from pathlib import Path

import pytest

LOG = Path(__file__).with_name("log")


@pytest.fixture(scope="session")
def settings():
    return {"base": 7}


@pytest.fixture(scope="session")
def shared(settings):
    with LOG.open("a") as log:
        log.write(f"setup {os.getpid()}\\n")
    yield {"seen": [], "settings": settings}
    with LOG.open("a") as log:
        log.write(f"teardown {os.getpid()}\\n")


@pytest.fixture(scope="session")
def broken():
    raise RuntimeError("the shared setup broke")


@pytest.fixture(scope="session")
def threaded():
    stop = threading.Event()
    threading.Thread(target=stop.wait, name="pool-thread", daemon=True).start()
    yield
    stop.set()


@pytest.fixture(scope="session")
def breaks_at_teardown():
    yield 1
    raise RuntimeError("the shared teardown broke")


@pytest.fixture
def per_test():
    return 1


@pytest.fixture(scope="session", params=[1, 2])
def two_values(request):
    return request.param
"""

TESTS = """
import os
from pathlib import Path

import pytest


@pytest.mark.parametrize("n", range(4))
def test_changes_stay_in_the_child(shared, n):
    shared["seen"].append(n)  # in memory: copied on write, the next test does not see it
    shared["settings"]["base"] += 1
    assert shared["seen"] == [n]
    assert shared["settings"]["base"] == 8
    Path(__file__).with_name(f"pid-{n}").write_text(str(os.getpid()))


def test_without_the_fixture():
    pass
"""


def _log(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "log").read_text().splitlines()


ONE_FORKED_WORKER = ("--executor-backend=forked", "--executor-workers=1")


def _run(pytester: pytest.Pytester, *args: str, ini: str = "", **files: str) -> pytest.RunResult:
    """Run ``files`` (module name: source) with the shared conftest in a fresh pytest process."""
    pytester.makeini(INNER_INI + ini)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**files)
    return pytester.runpytest_subprocess(*args)


def test_a_shared_fixture_is_set_up_once_in_the_worker_and_copied_on_write(pytester: pytest.Pytester) -> None:
    result = _run(pytester, *ONE_FORKED_WORKER, "--executor-fork-shared=shared", test_shared=TESTS)
    result.assert_outcomes(passed=5)
    children = {(pytester.path / f"pid-{n}").read_text() for n in range(4)}
    assert len(children) == 4, "each test must still run in a child of its own"
    # Set up and torn down once, in the worker (no child's pid), not around each test.
    log = _log(pytester)
    assert [line.split()[0] for line in log] == ["setup", "teardown"], log
    assert len({line.split()[1] for line in log}) == 1
    assert log[0].split()[1] not in children


def test_by_default_a_session_fixture_is_built_in_every_child(pytester: pytest.Pytester) -> None:
    result = _run(pytester, *ONE_FORKED_WORKER, test_shared=TESTS)
    result.assert_outcomes(passed=5)
    assert [line.split()[0] for line in _log(pytester)] == ["setup", "teardown"] * 4


def test_the_ini_option_and_one_sharing_per_worker(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, "--executor-backend=forked", "--executor-workers=2",
        test_shared=TESTS, ini="executor_fork_shared = shared\n"
    )
    result.assert_outcomes(passed=5)
    log = _log(pytester)
    assert sorted(line.split()[0] for line in log) == ["setup"] * 2 + ["teardown"] * 2, log


def test_a_shared_fixture_that_fails_errors_each_test_using_it(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, *ONE_FORKED_WORKER, "--executor-fork-shared=broken",
        test_broken="def test_a(broken): pass\ndef test_b(broken): pass\ndef test_c(): pass\n"
    )
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ["ERROR test_broken.py::test_a - RuntimeError: the shared setup broke",
         "ERROR test_broken.py::test_b - RuntimeError: the shared setup broke"]
    )


def test_a_shared_fixture_whose_teardown_fails_is_in_the_warnings_summary(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, *ONE_FORKED_WORKER, "--executor-fork-shared=breaks_at_teardown",
        test_teardown="def test_a(breaks_at_teardown): pass\ndef test_b(breaks_at_teardown): pass\n"
    )
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        ["*PytestWarning: teardown of a shared fixture (--executor-fork-shared) failed in worker f0:",
         '*conftest.py", line *, in breaks_at_teardown',
         "*RuntimeError: the shared teardown broke"]
    )


def test_a_shared_fixture_that_starts_a_thread_falls_back_to_subprocess(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, *ONE_FORKED_WORKER, "--executor-fork-shared=threaded",
        test_threaded="def test_a(threaded): pass\ndef test_b(): pass\n"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["executor: forked backend falls back to subprocess: 1 thread(s) running after the shared "
         "fixture(s) threaded were set up (pool-thread)"]
    )


@pytest.mark.parametrize(
    ("names", "error"),
    [
        ("per_test", "*fixture 'per_test' (in conftest) is function-scoped; only session-scoped fixtures can be shared*"),
        ("two_values", "*fixture 'two_values' (in conftest) is parametrized; a shared fixture must have one value*"),
        ("shared,nosuch", "*no fixture named 'nosuch' was collected*"),
        ("not-a-name", "*'not-a-name' is not a fixture name (option --executor-fork-shared / ini executor_fork_shared)*"),
    ],
)
def test_what_cannot_be_shared_is_a_usage_error(pytester: pytest.Pytester, names: str, error: str) -> None:
    result = _run(pytester, *ONE_FORKED_WORKER, f"--executor-fork-shared={names}", test_shared=TESTS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {error}"])
    assert not (pytester.path / "log").exists(), "nothing may run"


UNUSED = "*has no effect: no selected test runs on the forked backend (they run on process); it applies with " \
    '--executor-backend=forked or to tests marked job(backend="forked")'


def test_the_option_without_a_forked_test_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, "--executor-backend=process", "--executor-workers=1", "--executor-fork-shared=shared", test_shared=TESTS
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --executor-fork-shared=shared{UNUSED}"])
    assert not (pytester.path / "log").exists(), "nothing may run"


def test_the_ini_option_without_a_forked_test_is_a_warning_line(pytester: pytest.Pytester) -> None:
    """Project configuration: a run that selects no forked test (``-k``, one file) still runs."""
    result = _run(
        pytester, "--executor-backend=process", "--executor-workers=1",
        test_plain="def test_a(shared): pass\ndef test_b(): pass\n", ini="executor_fork_shared = shared\n"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"executor: warning: executor_fork_shared=shared{UNUSED}"])


MARKED = """
import pytest


@pytest.mark.job(backend="forked")
def test_forked(shared):
    assert shared["settings"]["base"] == 7


def test_local():
    pass
"""


def test_the_option_with_some_tests_marked_forked_is_accepted(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--executor-workers=1", "--executor-fork-shared=shared", test_marked=MARKED)
    result.assert_outcomes(passed=2)
    assert "has no effect" not in result.stdout.str() + result.stderr.str()
    assert [line.split()[0] for line in _log(pytester)] == ["setup", "teardown"]
