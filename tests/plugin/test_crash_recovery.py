"""Acceptance: a worker that crashes or times out fails only its test and is replaced."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.timeout(90)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

CRASHES = """
import os
import signal
import time
from pathlib import Path

import pytest


def test_exit():
    print("output before os._exit")
    os._exit(3)


def test_segfault():
    print("output before the segfault")
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.job(retries=1)
def test_crashes_once_then_passes():
    marker = Path(__file__).with_name("crashed-once")
    if not marker.exists():
        marker.write_text("x")
        os._exit(1)


@pytest.mark.job(timeout=1)
def test_hangs():
    print("partial output of the hanging test")
    time.sleep(60)


def test_still_runs():
    pass
"""


def _line(text: str) -> int:
    """Line number of ``text`` in the generated test module."""
    return next(number for number, line in enumerate(CRASHES.lstrip("\n").splitlines(), start=1) if text in line)


def test_crashes_and_timeouts_fail_one_test_each_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_crashes=CRASHES)
    result = pytester.runpytest_subprocess("--executor-backend=process", "--executor-workers=2", "-rA")
    result.assert_outcomes(failed=3, passed=2)
    result.stdout.fnmatch_lines_random(
        [
            # os._exit: the exit code and the test's captured output
            "*worker w* crashed while running test_crashes.py::test_exit (exit code 3)*replaced*",
            "*output before os._exit*",
            # segfault: the signal, faulthandler's stack with the test's line
            "*worker w* crashed while running test_crashes.py::test_segfault (killed by signal SIGSEGV)*",
            "*Fatal Python error: Segmentation fault*",
            f'*File "*test_crashes.py", line {_line("os.kill(")} in test_segfault*',
            "*output before the segfault*",
            # timeout: only that worker killed, stack dump and partial output kept
            "*Timeout: test_crashes.py::test_hangs did not finish within 1 s on worker w*",
            f'*File "*test_crashes.py", line {_line("time.sleep(60)")} in test_hangs*',
            "*partial output of the hanging test*",
            "PASSED test_crashes.py::test_crashes_once_then_passes",
            "PASSED test_crashes.py::test_still_runs",
            "*executor: worker w* lost: timeout*",
        ]
    )
    # The retried test passed on its second attempt, after its worker crashed.
    result.stdout.fnmatch_lines(["*test_crashes_once_then_passes*"])
    assert (pytester.path / "crashed-once").exists()
    assert not list(pytester.path.glob("core*")), "a crash must not leave a core file behind"


BEFORE_A_CRASH = """
import os
from pathlib import Path

import pytest


def test_passes():
    pass


@pytest.mark.job(retries=1)
def test_fails_once():
    marker = Path(__file__).with_name("failed-once")
    if not marker.exists():
        marker.write_text("x")
        assert False, "first attempt"


def test_exits():
    os._exit(3)


def test_after():
    pass
"""


@pytest.mark.parametrize("backend", ["process", pytest.param("dask", marks=pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs the dask extra"))])
def test_items_whose_teardown_was_pending_on_a_crashed_worker_still_end(pytester: pytest.Pytester, backend: str) -> None:
    """A worker tears an item down once it has its next task; if that task kills it, the item still ends.

    The earlier item's ``done`` (and a failed attempt's close) died with the
    worker: it must neither count as cancelled nor replay the failed attempt.
    On dask the session's call answers carry them the same way (the run's
    LocalCluster of one worker: the retry finds the marker its first attempt wrote).
    """
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_pending=BEFORE_A_CRASH)
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=1", "-v", "-p",
                                           "no:randomly", "--junitxml=out.xml")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "test_pending.py::test_passes PASSED*",
        "test_pending.py::test_exits FAILED*",
        f"*worker {'d' if backend == 'dask' else 'w'}0 crashed while running test_pending.py::test_exits (exit code 3)*",
        f"{backend} * 4 * 3 * 1 * 0 * 0 * 0 * 0 * 0 * 5 *",
    ])
    result.stdout.no_fnmatch_line("*test_fails_once FAILED*")
    assert (pytester.path / "out.xml").read_text().count("<testcase ") == 4
