"""Acceptance: worker sessions leave pytest's run-wide cache (``--lf``, ``--nf``, ``--sw``) to the controller.

Every run is a real ``pytest`` subprocess with the cacheprovider enabled; its
workers are real processes.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(90)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail
"""

# A worker ends its session (where pytest's cacheprovider saves what it saw)
# only once the controller has saved its own view of the whole run.
LATE_WORKERS = """
import os
import pathlib
import time

import pytest

SIGNAL = pathlib.Path(__file__).parent / "controller-finished"


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    if not os.environ.get("PYTEST_EXECUTOR_WORKER"):
        try:
            return (yield)
        finally:
            SIGNAL.touch()
    deadline = time.monotonic() + 30
    while not SIGNAL.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return (yield)
"""

SUITE = """
import os

def test_a():
    assert not os.environ.get("FAIL_A")

def test_b():
    pass

def test_c():
    pass

def test_d():
    pass
"""


def test_last_failed_is_the_controllers_view_of_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest(LATE_WORKERS)
    pytester.makepyfile(test_cache=SUITE)
    args = ("--executor-backend=process", "--executor-workers=2")
    monkeypatch.setenv("FAIL_A", "1")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=3, failed=1)
    monkeypatch.delenv("FAIL_A")
    (pytester.path / "controller-finished").unlink()
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=4)
    # Nothing failed last time: --lf runs everything, as after a serial run.
    result = pytester.runpytest_subprocess("--lf", *args)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["run-last-failure: no previously failed tests, not deselecting items."])
