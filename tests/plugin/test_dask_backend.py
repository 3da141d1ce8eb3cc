"""Acceptance: ``--executor-backend=dask`` on a real LocalCluster, by address or started for the run."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys

import psutil
import pytest
from _late_worker import LATE_SESSION_CONFTEST, RENDEZVOUS_SUITE

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

SUITE = """
import os
import time
from pathlib import Path

import pytest


# where the sessions leave notes for each other: each dask worker may run a copy of its own
RECORD = Path(Path(__file__).with_name("record.txt").read_text())


def test_pass():
    Path(__file__).with_name(f"ran-on-{os.environ['PYTEST_EXECUTOR_WORKER']}").write_text("x")
    (RECORD / "passed").write_text("x")


def test_fail():
    print("output from a dask-hosted session")
    assert 0, "boom"


@pytest.mark.skip(reason="skipped on purpose")
def test_skip():
    pass


@pytest.mark.xfail(reason="known")
def test_xfail():
    assert 0


@pytest.mark.job(after="test_pass")
def test_after_pass():
    assert (RECORD / "passed").exists()


def test_crash():
    os._exit(5)


@pytest.mark.job(timeout=1)
def test_hangs():
    time.sleep(60)


def test_last():
    pass
"""


def _check_suite(result: pytest.RunResult, pytester: pytest.Pytester, shipped: bool) -> None:
    result.assert_outcomes(passed=3, failed=3, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*output from a dask-hosted session*",
            "*worker d* crashed while running test_suite.py::test_crash (exit code 5)*",
            "*Timeout: test_suite.py::test_hangs did not finish within 1 s on worker d*",
            "PASSED test_suite.py::test_after_pass",
            "PASSED test_suite.py::test_last",
        ]
    )
    # the summary shows only the statuses that occur
    result.stdout.re_match_lines([r"backend +jobs +passed +failed +skipped +xfailed +attempts +busy +workers$",
                                  r"dask +8 +3 +3 +1 +1 +8 +\S+s +\d+$"])
    ran_here = [path.name.startswith("ran-on-d") for path in pytester.path.glob("ran-on-*")]
    # a cluster given by address runs a shipped copy; the one started for the run, the files in place
    assert ran_here == ([] if shipped else [True])


def test_runs_on_a_cluster_given_by_address(pytester: pytest.Pytester, dask_address: str) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_suite=SUITE)
    (pytester.path / "record.txt").write_text(str(pytester.mkdir("record")))
    result = pytester.runpytest_subprocess("--executor-backend=dask", f"--executor-dask-address={dask_address}", "-rA")
    _check_suite(result, pytester, shipped=True)
    _assert_quiet_stderr(result)


def test_starts_a_local_cluster_by_default(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_suite=SUITE)
    (pytester.path / "record.txt").write_text(str(pytester.mkdir("record")))
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=2", "-rA")
    _check_suite(result, pytester, shipped=False)
    _assert_quiet_stderr(result)
    # Nothing outlives the run, not even for a moment: the fork server the workers came from included.
    assert _processes_mentioning(pytester.path) == []


MEET_SUITE = """
import os
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("n", range(3))
def test_meet(n):
    (HERE / f"started-{n}").write_text(os.environ["PYTEST_EXECUTOR_WORKER"])
    deadline = time.monotonic() + 60  # a bounded wait on files the other sessions write
    while len(list(HERE.glob("started-*"))) < 3:
        assert time.monotonic() < deadline, "the three sessions never ran at once"
        time.sleep(0.01)
"""


def test_the_run_cluster_grows_to_its_size_with_a_session_per_worker(pytester: pytest.Pytester) -> None:
    """The run starts on the cluster's first worker; each worker that joins later gets one session, no more.

    The three tests wait for each other: they pass only on three sessions at once.
    """
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_meet=MEET_SUITE)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=3", f"--executor-report={report}")
    result.assert_outcomes(passed=3)
    workers = sorted(job["worker"] for job in json.loads(report.read_text())["jobs"])
    assert workers == ["d0", "d1", "d2"]


def test_a_run_over_before_its_cluster_grew_ends_quietly_and_leaves_nothing(pytester: pytest.Pytester) -> None:
    """Workers still starting when the last test ends are stopped with the cluster: no noise, no process left."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=8")
    result.assert_outcomes(passed=1)
    _assert_quiet_stderr(result)
    assert _processes_mentioning(pytester.path) == []


def _processes_mentioning(path: object) -> list[str]:
    """The live processes whose command line names ``path`` (the run's directory is on a fork server's)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if str(path) in command and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {command[:300]}")
    return found


def _assert_quiet_stderr(result: pytest.RunResult) -> None:
    """Nothing of dask's shutdown on stderr: no unretrieved future, no client closing on a closed loop."""
    noise = [line for line in result.stderr.lines
             if re.search(r"never retrieved|Exception ignored|IOLoop is closed|Traceback|Error", line)]
    assert noise == [], result.stderr.str()


@pytest.mark.timeout(90)
def test_a_starting_session_gets_work_the_ready_one_has_not_started(pytester: pytest.Pytester, dask_address: str) -> None:
    """One session is ready well before the other: it must not hoard queued items meanwhile.

    test_a and test_b each wait until the other has started, so they pass
    only on two sessions at once; the second session collects only after
    test_a started, when the first one, warmed up by tiny tests, would
    prefetch test_b behind test_a if nothing held it back.
    """
    pytester.makeini(INNER_INI)
    pytester.makeconftest(LATE_SESSION_CONFTEST)
    pytester.makepyfile(test_meet=RENDEZVOUS_SUITE)
    meet = pytester.mkdir("meet")  # each dask worker runs its own copy of the suite: they meet here
    (pytester.path / "meet-dir.txt").write_text(str(meet))
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "--executor-backend=dask", f"--executor-dask-address={dask_address}", f"--executor-report={report}"
    )
    result.assert_outcomes(passed=8)
    workers = {job["test"]: job["worker"] for job in json.loads(report.read_text())["jobs"]}
    pair = {workers["test_meet.py::test_a"], workers["test_meet.py::test_b"]}
    assert len(pair) == 2 and all(wid.startswith("d") for wid in pair), workers


def test_unreachable_address_is_a_clear_error_within_seconds(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-dask-address=tcp://127.0.0.1:9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--executor-dask-address tcp://127.0.0.1:9: cannot reach the dask scheduler within 5 s*"])


def test_a_cluster_for_the_run_without_cryptography_is_a_usage_error_before_collection(
    pytester: pytest.Pytester,
) -> None:
    """Its TLS certificates need cryptography: without it, say what to install (was: a traceback, rc 0)."""
    pytester.makeini(INNER_INI)
    pytester.makeconftest("import sys\n\nsys.modules['cryptography'] = None  # import cryptography fails\n")
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=1", "-W", "error")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --executor-backend=dask without --executor-dask-address: *needs the 'cryptography' package: "
        "pip install 'pytest-executor[[]dask[]]'*"
    ])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


SPARE_SUITE = """
import multiprocessing
import os

import psutil


def test_in_a_session_of_the_run_cluster():
    zygote = psutil.Process(os.getppid())
    assert "zygote_main" not in " ".join(zygote.cmdline())  # forked from its dask worker, not a fresh python -c
    current = multiprocessing.current_process()
    assert (current.name, current.daemon, multiprocessing.get_start_method(True)) == ("MainProcess", False, None)
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(3,))
    child.start()  # a daemonic process could not
    child.join(30)
    assert child.exitcode == 3
"""


def test_sessions_of_the_run_cluster_skip_an_interpreter_start_and_see_a_main_process(pytester: pytest.Pytester) -> None:
    """The run's LocalCluster gives each worker a spare zygote with pytest and the plugins imported; nothing shows."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_spare=SPARE_SUITE)
    result = pytester.runpytest_subprocess(
        "--executor-backend=dask", "--executor-workers=1", "-W", "error::pytest.PytestAssertRewriteWarning", "-rA"
    )
    result.assert_outcomes(passed=1)
    _assert_quiet_stderr(result)


def test_cluster_started_for_the_run_leaves_the_dashboard_port_to_the_user(pytester: pytest.Pytester) -> None:
    """A user's own dask dashboard holds 8787: the run's LocalCluster takes a free port, without a warning."""
    with socket.socket() as users_dashboard:
        try:
            users_dashboard.bind(("", 8787))
            users_dashboard.listen()
        except OSError:
            pass  # another program holds 8787 already, which is the situation this test sets up
        pytester.makeini(INNER_INI)
        pytester.makepyfile(test_one="def test_one():\n    pass\n")
        result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=1", "-W", "error")
    result.assert_outcomes(passed=1)
    assert "8787" not in result.stdout.str() + result.stderr.str()


def test_with_capture_disabled_the_sessions_output_reaches_the_terminal(
    pytester: pytest.Pytester, dask_address: str
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_loud="def test_prints():\n    print('printed on a dask worker')\n")
    result = pytester.runpytest_subprocess("--executor-backend=dask", f"--executor-dask-address={dask_address}", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*printed on a dask worker*"])


def test_the_run_clusters_settings_are_all_known_to_dask() -> None:
    """dask takes any key: a misspelt one in the run cluster's settings would change nothing, silently."""
    import dask

    from pytest_executor.backends._dask_start import SETTINGS

    unknown = []
    for key in SETTINGS:
        try:
            dask.config.get(key)
        except KeyError:
            unknown.append(key)
    assert not unknown, f"not dask settings: {unknown}"


def test_the_plugins_packages_imported_before_pytest_starts_raise_no_rewrite_warning(pytester: pytest.Pytester) -> None:
    """A dask session imports them before pytest starts; pytest then marks them for rewriting.

    pytest 8 worded that warning differently from pytest 9 (a ``-W`` filter on
    its message missed it), and every dask session of a suite with
    ``filterwarnings = error`` failed to start.  Here a conftest marks them
    again after they were imported, as in such a session: the packages (pytest
    marks a plugin's whole distribution) and the plugin's ``pytest_plugins``
    (pytest 8 marks each as it loads it).
    """
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(
        "import pytest_executor.plugin\n"
        "\n"
        "def pytest_configure(config):\n"
        "    names = ['executor', 'pytest_executor', *pytest_executor.plugin.pytest_plugins]\n"
        "    config.pluginmanager.rewrite_hook.mark_rewrite(*names)\n"
    )
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "cannot be rewritten" not in result.stdout.str() + result.stderr.str()


def test_every_module_pytest_8_marks_in_a_session_opts_out_of_rewriting() -> None:
    """pytest 8 also marks each of a plugin's ``pytest_plugins`` as it loads it, and warns if it was imported.

    A dask session imported them before pytest started (its fork server did),
    which a pytest process cannot imitate (there pytest imports them through its
    hook): the opt-out pytest reads is checked directly.
    """
    import importlib

    from _pytest.assertion.rewrite import AssertionRewriter

    import pytest_executor.plugin

    for name in ["executor", "pytest_executor", *pytest_executor.plugin.pytest_plugins]:
        assert AssertionRewriter.is_rewrite_disabled(importlib.import_module(name).__doc__ or ""), name


def _heartbeat_record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1,
                                 "Failed to communicate with scheduler during heartbeat.", (), sys.exc_info())


def test_run_cluster_workers_leave_out_only_a_heartbeat_failure_on_a_closed_comm() -> None:
    """A worker closing with a heartbeat in flight logged a traceback on the run's stderr (seen in CI, and under load)."""
    from distributed.comm.core import CommClosedError

    from pytest_executor.backends._dask_quiet import ClosingPoolHeartbeat
    from pytest_executor.backends._dask_start import _HOST_MODULES

    assert "pytest_executor.backends._dask_quiet" in _HOST_MODULES  # every worker of the run's cluster has it
    quiet = ClosingPoolHeartbeat()
    assert not quiet.filter(_heartbeat_record(CommClosedError("ConnectionPool closing.")))
    closed_by_the_scheduler = "in <TLS (closed) ConnectionPool.heartbeat_worker local=tls://127.0.0.1:2>: Stream is closed"
    assert not quiet.filter(_heartbeat_record(CommClosedError(closed_by_the_scheduler)))
    assert quiet.filter(_heartbeat_record(OSError("Timed out trying to connect to tls://127.0.0.1:1")))
    assert quiet.filter(logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, "another error", (), None))


def test_the_backend_leaves_importing_distributed_to_the_cluster_start_thread() -> None:
    """Importing the backend imports no ``distributed``: the run's own cluster imports it on its start thread,
    while the controller collects (an import on the controller's thread delayed its collection by half a second)."""
    import subprocess

    code = ("import sys, pytest_executor.backends.dask; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('distributed', 'dask')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]", out
