"""Acceptance: Ctrl-C and ``-x`` stop every worker; no child or grandchild survives."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from _processes import alive, wait_for
from tests.foreign_plugins import OFF as FOREIGN_PLUGINS_OFF

pytestmark = pytest.mark.timeout(90)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

BLOCKING = """
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def test_blocks_with_a_grandchild():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (HERE / "grandchild.pid").write_text(str(child.pid))
    (HERE / f"worker-{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(120)


def test_blocks():
    (HERE / f"worker-{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    (HERE / "finished").write_text("x")
"""


def _assert_all_gone(pids: set[int]) -> None:
    # Killed processes vanish asynchronously; give the kernel a moment, bounded.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in pids if alive(pid)]
    assert not survivors, f"processes survived: {survivors}"


def _spawn_pytest(path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTEST_ADDOPTS"] = FOREIGN_PLUGINS_OFF
    env.pop("PYTEST_EXECUTOR_WORKER", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("backend", ["process", "forked", "subprocess"])
def test_ctrl_c_gives_the_interrupted_summary_and_leaves_no_process(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_blocking=BLOCKING)
    proc = _spawn_pytest(pytester.path, f"--executor-backend={backend}", "--executor-workers=2", "-p", "no:timeout")
    try:
        wait_for(
            lambda: len(list(pytester.path.glob("worker-*.pid"))) == 2 and (pytester.path / "grandchild.pid").exists(),
            "both tests to start",
        )
        tree = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        tree.add(int((pytester.path / "grandchild.pid").read_text()))
        assert len(tree) >= 3  # two workers and the grandchild
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    # pytest's interrupted summary: both tests were still running, so none is counted
    assert re.search(r"^!+ KeyboardInterrupt !+$", output, re.MULTILINE), output
    assert re.search(r"^=+ no tests ran in [\d.]+s =+$", output, re.MULTILINE), output
    assert not (pytester.path / "finished").exists()
    _assert_all_gone(tree)


EXITFIRST = """
import os
import time
from pathlib import Path

HERE = Path(__file__).parent


def test_slow():
    (HERE / f"slow-{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    (HERE / "slow-finished").write_text("x")


def test_fails_once_the_slow_one_runs():
    deadline = time.monotonic() + 60
    while not list(HERE.glob("slow-*.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0, "first failure"


def test_never_started():
    (HERE / "never-started").write_text("x")
"""


@pytest.mark.parametrize("backend", ["process", "forked", "subprocess"])
def test_exitfirst_stops_every_worker(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_exitfirst=EXITFIRST)
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=2", "-x", "-p", "no:timeout")
    result.stdout.fnmatch_lines(["*first failure*", "*stopping after 1 failures*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1 and "passed" not in outcomes
    assert not (pytester.path / "slow-finished").exists()
    assert not (pytester.path / "never-started").exists()
    pids = {int(path.read_text()) for path in pytester.path.glob("slow-*.pid")}
    assert pids
    _assert_all_gone(pids)


TERMINATED_CHILD = """
import multiprocessing
import signal
import time


def test_a_forked_child_ends_on_sigterm_as_under_plain_pytest():
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    child.start()
    child.terminate()  # what multiprocessing.Pool.terminate does to its workers
    child.join(30)
    assert child.exitcode == -signal.SIGTERM
"""


@pytest.mark.parametrize("backend", [(), ("--executor-backend=process", "--executor-workers=1")], ids=["inert", "process"])
def test_a_child_forked_by_a_test_keeps_sigterm_default(pytester: pytest.Pytester, backend: tuple[str, ...]) -> None:
    """The controller's and the sessions' SIGTERM handlers are not the forked child's (a Pool.terminate hung on them)."""
    pytester.makepyfile(test_child=TERMINATED_CHILD)
    result = pytester.runpytest_subprocess(*backend, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


SIGINT_IN_A_TEST = """
import os
import signal
import time

import pytest


def test_sigint_to_itself_raises_keyboard_interrupt():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
"""


@pytest.mark.parametrize("backend", ["process", "dask"])
def test_a_test_sees_sigint_as_under_plain_pytest(pytester: pytest.Pytester, backend: str) -> None:
    """A worker session has a process group of its own: Ctrl-C never reaches it, and SIGINT keeps Python's default."""
    pytester.makepyfile(test_sigint=SIGINT_IN_A_TEST)
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=1", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
