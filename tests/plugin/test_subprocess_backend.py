"""Acceptance: ``--executor-backend=subprocess`` runs every test in a fresh pytest process."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(90)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

ISOLATION = """
import os
from pathlib import Path

import pytest

SEEN = []  # module state: shared between tests of one process, fresh in each subprocess


@pytest.mark.parametrize("n", range(3))
def test_module_state_is_fresh(n):
    SEEN.append(n)
    Path(__file__).with_name(f"pid-{n}").write_text(str(os.getpid()))
    assert SEEN == [n]


def test_failure_looks_like_pytest():
    print("captured in a subprocess")
    assert 1 + 1 == 3


@pytest.mark.job(after="test_module_state_is_fresh")
def test_runs_after_all_instances():
    assert all(Path(__file__).with_name(f"pid-{n}").exists() for n in range(3))


def test_crash():
    os._exit(7)
"""


def test_each_test_runs_in_its_own_process_and_reports_like_pytest(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_isolation=ISOLATION)
    serial = pytester.runpytest_subprocess("-k", "not crash")
    # In one process module state leaks, so two instances fail and their dependent is skipped.
    serial.assert_outcomes(passed=1, failed=3, skipped=1)
    for n in range(3):
        (pytester.path / f"pid-{n}").unlink()

    result = pytester.runpytest_subprocess("--executor-backend=subprocess", "--executor-workers=2", "-rA")
    result.assert_outcomes(passed=4, failed=2)
    pids = {(pytester.path / f"pid-{n}").read_text() for n in range(3)}
    assert len(pids) == 3, "each test must run in a process of its own"
    result.stdout.fnmatch_lines_random(
        [
            "*def test_failure_looks_like_pytest():*",
            "E       assert (1 + 1) == 3",
            "*captured in a subprocess*",
            "*worker s* crashed while running test_isolation.py::test_crash (exit code 7)*",
            "PASSED test_isolation.py::test_runs_after_all_instances",
        ]
    )
