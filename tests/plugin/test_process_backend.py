"""Acceptance: ``--executor-backend=process`` — outcomes, junitxml, order, fixtures, collection check.

Every run is a real ``pytest`` subprocess whose workers are real processes.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _late_worker import LATE_SESSION_CONFTEST, RENDEZVOUS_SUITE

pytestmark = pytest.mark.timeout(90)

# Inner runs skip heavy plugins they do not need: each worker imports them too.
INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

PROCESS = ("--executor-backend=process", "--executor-workers=2")

MIXED = """
import unittest
import warnings

import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown broke")


def test_pass():
    pass


def test_fail():
    print("output of a failing test")
    assert 0, "boom"


@pytest.mark.skip(reason="skipped on purpose")
def test_skip():
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0


@pytest.mark.xfail(reason="known bug")
def test_xpass():
    pass


def test_error(broken):
    pass


def test_teardown_error(bad_teardown):
    pass


def test_warns():
    warnings.warn("warned in a worker", UserWarning)


@pytest.mark.parametrize("n", range(4))
def test_param(n):
    assert n != 3


def test_subtests(subtests):
    for i in range(3):
        with subtests.test(i=i):
            assert i != 1


class TestUnit(unittest.TestCase):
    def test_ok(self):
        self.assertTrue(True)

    def test_bad(self):
        self.assertEqual(1, 2)

    @unittest.skip("unittest skip")
    def test_skipped(self):
        pass
"""


def _testcases(path: Path) -> list[tuple[str, str, str]]:
    """(classname, name, kind of result) of every junit test case, sorted."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = sorted(child.tag for child in case if child.tag in ("failure", "error", "skipped"))
        cases.append((case.get("classname", ""), case.get("name", ""), ",".join(kinds)))
    return sorted(cases)


def test_outcomes_and_junitxml_equal_a_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_mixed=MIXED)
    serial = pytester.runpytest_subprocess("--junitxml=serial.xml", "-rA")
    parallel = pytester.runpytest_subprocess(*PROCESS, "--junitxml=parallel.xml", "-rA")

    assert parallel.parseoutcomes() == serial.parseoutcomes()
    assert parallel.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    serial_cases = _testcases(pytester.path / "serial.xml")
    assert len(serial_cases) == 16
    assert _testcases(pytester.path / "parallel.xml") == serial_cases
    parallel.stdout.fnmatch_lines(
        [
            "*output of a failing test*",
            "*UserWarning: warned in a worker*",
            "ERROR test_mixed.py::test_teardown_error - RuntimeError: teardown broke",
            "FAILED test_mixed.py::test_fail - AssertionError: boom*",
        ]
    )
    # the executor table counts every job, in the statuses that occur (no cancelled column); before
    # pytest 9 (no built-in ``subtests`` fixture) test_subtests is an error at setup instead of a failure
    failed, errors = (4, 2) if hasattr(pytest, "Subtests") else (3, 3)
    parallel.stdout.re_match_lines([
        r"backend +jobs +passed +failed +error +skipped +xfailed +xpassed +attempts +busy +workers$",
        # on a slow machine one worker may run all 16 first
        rf"process +16 +6 +{failed} +{errors} +2 +1 +1 +16 +\S+s +[12]$",
    ])


ORDER_CONFTEST = """
import json
import os
import os
import time

import pytest

WORKER = os.environ.get("PYTEST_EXECUTOR_WORKER", "main")


def record(*fields):
    with open(os.path.join(os.path.dirname(__file__), f"log-{WORKER}.jsonl"), "a") as log:
        log.write(json.dumps([*fields, time.time()]) + "\\n")


@pytest.fixture(scope="session", autouse=True)
def session_resource():
    record("session", "")


@pytest.fixture(scope="module", autouse=True)
def module_resource(request):
    record("module", request.module.__name__)


@pytest.fixture(autouse=True)
def timed(request):
    record("start", request.node.nodeid)
    yield
    record("stop", request.node.nodeid)
"""

ORDER_A = """
import time

import pytest


def test_first():
    time.sleep(0.05)


@pytest.mark.job(after="test_b.py::test_second")
def test_third():
    pass


@pytest.mark.parametrize("n", range(6))
def test_filler_a(n):
    time.sleep(0.03)
"""

ORDER_B = """
import time

import pytest


@pytest.mark.job(after="test_a.py::test_first")
def test_second():
    time.sleep(0.05)


@pytest.mark.parametrize("n", range(6))
def test_filler_b(n):
    time.sleep(0.03)
"""


def _logs(path: Path) -> dict[str, list[list[object]]]:
    return {
        log.stem.removeprefix("log-"): [json.loads(line) for line in log.read_text().splitlines()]
        for log in sorted(path.glob("log-*.jsonl"))
    }


def test_dependencies_hold_across_workers_and_fixtures_are_per_worker(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest(ORDER_CONFTEST)
    pytester.makepyfile(test_a=ORDER_A, test_b=ORDER_B)
    result = pytester.runpytest_subprocess(*PROCESS, "-v")
    result.assert_outcomes(passed=15)
    logs = _logs(pytester.path)
    assert "main" not in logs, "no test may run in the controller"
    times = {(kind, name): stamp for entries in logs.values() for kind, name, stamp in entries if kind != "session"}
    for before, after in (("test_a.py::test_first", "test_b.py::test_second"), ("test_b.py::test_second", "test_a.py::test_third")):
        assert times[("stop", before)] <= times[("start", after)], (before, after)

    for worker, entries in logs.items():
        kinds = [entry[0] for entry in entries]
        assert kinds.count("session") == 1, f"{worker}: the session fixture is set up once per worker"
        active = None
        for kind, name, _ in entries:
            if kind == "module":
                assert name != active, f"{worker}: module fixture of {name} set up twice in a row"
                active = name
            elif kind == "start":
                assert str(name).split(".py::")[0] == active, f"{worker}: {name} ran without its module fixture"
        # Module fixtures are set up once per run of consecutive items of a module on a worker.
        modules = [str(name).split(".py::")[0] for kind, name, _ in entries if kind == "start"]
        runs = sum(1 for i, module in enumerate(modules) if i == 0 or modules[i - 1] != module)
        assert kinds.count("module") == runs, f"{worker}: {kinds.count('module')} module setups, {runs} runs"


MISMATCH_CONFTEST = """
import os


def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_EXECUTOR_WORKER"):
        del items[0]  # a worker that collects differently from the controller
"""


def test_collection_mismatch_is_a_clear_error_naming_the_id(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest(MISMATCH_CONFTEST)
    pytester.makepyfile(test_m="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    result = pytester.runpytest_subprocess(*PROCESS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*collection mismatch*first differing id at position 0*controller has 'test_m.py::test_one'*"]
    )


STREAMS_CONFTEST = """
import os

# Import-time state: each worker imports the conftest itself (forked workers too).
IMPORTED_IN = os.environ.get("PYTEST_EXECUTOR_WORKER", "main")
print("conftest imported in", IMPORTED_IN)
"""

STREAMS = """
import os


def test_where(tmp_path):
    from conftest import IMPORTED_IN

    print("test ran in", os.environ["PYTEST_EXECUTOR_WORKER"], "imported in", IMPORTED_IN, "tmp", tmp_path)
    assert IMPORTED_IN == os.environ["PYTEST_EXECUTOR_WORKER"]


def test_other(tmp_path):
    test_where(tmp_path)
"""


@pytest.mark.parametrize("capture", ["-s", "--capture=tee-sys"])
def test_workers_own_their_streams_conftests_and_basetemp(pytester: pytest.Pytester, capture: str) -> None:
    """``-s`` shows the workers' output; conftests and tmp_path are per worker under ``--basetemp``."""
    pytester.makeini(INNER_INI)
    pytester.makeconftest(STREAMS_CONFTEST)
    pytester.makepyfile(test_streams=STREAMS)
    basetemp = pytester.path / "chosen-basetemp"
    result = pytester.runpytest_subprocess(*PROCESS, capture, f"--basetemp={basetemp}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*conftest imported in main*",
            "*conftest imported in w*",
            f"*test ran in w* imported in w* tmp {basetemp}{os.sep}executor-w*{os.sep}test_*",
        ]
    )


RETRIED = """
import pathlib

import pytest

SETUPS = []


@pytest.fixture(scope="module")
def resource():
    SETUPS.append("module")
    return SETUPS


def attempt(name):
    counter = pathlib.Path(__file__).parent / f"attempts-{name}"
    done = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(done + 1))
    return done + 1


@pytest.mark.job(retries=2)
def test_flaky(resource):
    assert attempt("flaky") >= 2, "first attempt fails"
    assert resource == ["module"], "a retry keeps the module's fixtures"


@pytest.mark.job(after="test_flaky", retries=1)
def test_always_fails():
    attempt("always")
    assert False, "nope"
"""


@pytest.mark.timeout(60)
def test_a_failed_attempt_is_retried_even_when_its_worker_has_nothing_else_to_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_retried=RETRIED)
    report = pytester.path / "run.json"
    result = pytester.runpytest_subprocess(*PROCESS, f"--executor-report={report}", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::test_flaky PASSED*", "*::test_always_fails FAILED*"])
    jobs = {job["test"].split("::")[-1]: job for job in json.loads(report.read_text())["jobs"]}
    assert [a["status"] for a in jobs["test_flaky"]["attempts"]] == ["failed", "passed"]
    assert [a["status"] for a in jobs["test_always_fails"]["attempts"]] == ["failed", "failed"]
    assert (pytester.path / "attempts-always").read_text() == "2"


BLOCKERS = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


@pytest.mark.xfail(reason="known bug")
def test_xfails():
    assert False


def test_errors(broken):
    pass


@pytest.mark.job(after="test_xfails")
def test_after_xfail():
    pass


@pytest.mark.job(after="test_errors")
def test_after_error():
    pass
"""


@pytest.mark.parametrize("backend", [(), PROCESS])
def test_skip_reasons_name_what_happened_to_the_dependency_as_in_the_pytest_process(
    pytester: pytest.Pytester, backend: tuple[str, ...]
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_blockers=BLOCKERS)
    result = pytester.runpytest_subprocess(*backend, "-rs")
    result.assert_outcomes(skipped=2, xfailed=1, errors=1)
    result.stdout.fnmatch_lines_random([
        "SKIPPED * test_blockers.py:*: dependency test_blockers.py::test_xfails xfailed",
        "SKIPPED * test_blockers.py:*: dependency test_blockers.py::test_errors errored",
    ])


@pytest.mark.parametrize("backend", ["process", "subprocess"])
def test_pytest_exit_in_a_worker_ends_the_run_as_in_the_pytest_process(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_exits="""
        import pytest

        def test_exits():
            pytest.exit("enough for today", returncode=7)
        """
    )
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}")
    assert result.ret == 7
    result.stdout.fnmatch_lines(["*_pytest.outcomes.Exit: enough for today*"])
    result.stdout.no_fnmatch_line("*crashed*")


@pytest.mark.parametrize("backend", ["process", "subprocess"])
def test_keyboard_interrupt_in_a_worker_stops_the_run_as_in_the_pytest_process(pytester: pytest.Pytester,
                                                                               backend: str) -> None:
    pytester.makeini(INNER_INI)
    reached = pytester.path / "reached"
    pytester.makepyfile(
        test_interrupts=f"""
        def test_interrupts():
            raise KeyboardInterrupt

        def test_never_reached():
            open({str(reached)!r}, "w").close()
        """
    )
    serial = pytester.runpytest_subprocess("-p", "no:executor")
    assert not reached.exists()
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=1", "-rA")
    assert result.ret == serial.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    result.stdout.no_fnmatch_line("*crashed*")
    assert not reached.exists()  # the interrupt stopped the run before the next test
    result.stdout.no_fnmatch_line("PASSED *test_never_reached*")  # -rA would list it


@pytest.mark.timeout(90)
def test_a_worker_ready_late_gets_work_the_ready_one_has_not_started(pytester: pytest.Pytester) -> None:
    """While a worker still collects, the ready one holds only the item it runs (see ``_late_worker``)."""
    pytester.makeini(INNER_INI)
    pytester.makeconftest(LATE_SESSION_CONFTEST)
    pytester.makepyfile(test_meet=RENDEZVOUS_SUITE)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(*PROCESS, f"--executor-report={report}")
    result.assert_outcomes(passed=8)
    workers = {job["test"]: job["worker"] for job in json.loads(report.read_text())["jobs"]}
    assert {workers["test_meet.py::test_a"], workers["test_meet.py::test_b"]} == {"w0", "w1"}, workers


ONE_CORE_CONFTEST = """
import os
import time
from pathlib import Path

import psutil

HERE = Path(__file__).parent

if not os.environ.get("PYTEST_EXECUTOR_WORKER"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the controller runs on one core


def pytest_configure(config):
    who = os.environ.get("PYTEST_EXECUTOR_WORKER", "controller")
    (HERE / f"configured-{who}-{os.getpid()}").write_text(repr(time.time()))


def sessions_started():
    # The pool's workers: the children of its zygote, the controller's child.
    return {worker.pid for zygote in psutil.Process().children() for worker in zygote.children()}


def pytest_collection_finish(session):
    if os.environ.get("PYTEST_EXECUTOR_WORKER"):
        return
    # The controller finishes collecting only once every session started so far is configured
    # (a bounded wait on their files): one started later was started for the tests.
    deadline = time.monotonic() + 30
    while True:
        configured = {int(path.name.rsplit("-", 1)[1]) for path in HERE.glob("configured-w*")}
        started = sessions_started()
        if started and started <= configured:
            break
        assert time.monotonic() < deadline, f"sessions {started} not all configured within 30 s"
        time.sleep(0.01)
    (HERE / "controller-collected").write_text(repr(time.time()))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_with_no_core_to_spare_the_second_session_starts_once_the_controller_collected(
    pytester: pytest.Pytester,
) -> None:
    """The controller's collection keeps a core: one session collects with it, the pool starts the other for the tests."""
    pytester.makeini(INNER_INI)
    pytester.makeconftest(ONE_CORE_CONFTEST)
    pytester.makepyfile(test_few="import pytest\n\n\n@pytest.mark.parametrize('n', range(4))\ndef test_n(n):\n    pass\n")
    result = pytester.runpytest_subprocess(*PROCESS)
    result.assert_outcomes(passed=4)
    collected = float((pytester.path / "controller-collected").read_text())
    sessions = {path.name.split("-")[1]: float(path.read_text()) for path in pytester.path.glob("configured-w*")}
    assert set(sessions) == {"w0", "w1"}, sessions
    assert sessions["w1"] > collected, (sessions, collected)
