"""Faults of the controller: SIGTERM cleans up like Ctrl-C; a SIGKILLed run's directories are reaped later."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from _processes import alive, run_pytest_to_end, spawn_pytest, wait_for

pytestmark = pytest.mark.timeout(150)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:cacheprovider -p no:timeout
"""

XDIST_BLOCKING = """
import os
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_first():
    pass


@pytest.mark.job(after="test_first")
def test_blocks():
    (HERE / f"started-{os.getpid()}").write_text("x")
    time.sleep(120)
"""


def _run_dirs(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("pytest-executor-xdist-*"))


def test_sigterm_of_an_xdist_controller_cleans_up_like_ctrl_c(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_blocking=XDIST_BLOCKING)
    proc = spawn_pytest(pytester.path, tmp_path, "-n", "2")
    try:
        wait_for(lambda: list(pytester.path.glob("started-*")), "the blocking test to start", timeout=90)
        assert len(_run_dirs(tmp_path)) == 1
        tree = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output, output
    assert _run_dirs(tmp_path) == []
    wait_for(lambda: not any(alive(pid) for pid in tree), "the workers to end", timeout=20)


def test_directories_of_a_sigkilled_controller_are_reaped_by_the_next_run(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytest.importorskip("xdist")
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_blocking=XDIST_BLOCKING)
    proc = spawn_pytest(pytester.path, tmp_path, "-n", "2")
    try:
        wait_for(lambda: list(pytester.path.glob("started-*")), "the blocking test to start", timeout=90)
        tree = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        proc.kill()  # SIGKILL: nothing of ours runs
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = _run_dirs(tmp_path)
    assert len(left) == 1  # what SIGKILL cannot avoid
    wait_for(lambda: not any(alive(pid) for pid in tree), "the orphaned workers to end", timeout=60)
    alive_owner = tmp_path / f"pytest-executor-xdist-{os.getpid()}-{int(psutil.Process().create_time())}-keep"
    alive_owner.mkdir()  # a running controller's directory is never touched
    for started in pytester.path.glob("started-*"):
        started.unlink()
    pytester.makepyfile(test_blocking="import pytest\n\ndef test_first():\n    pass\n\n"
                        "@pytest.mark.job(after='test_first')\ndef test_second():\n    pass\n")
    returncode, output = run_pytest_to_end(pytester.path, tmp_path, "-n", "2")
    assert returncode == 0, output
    assert _run_dirs(tmp_path) == [alive_owner]


DETACHING = """
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
DAEMON = '''
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(300)
'''


def test_detaches_a_daemon():
    import subprocess
    target = HERE / f"daemon-{os.getpid()}.pid"
    subprocess.run([sys.executable, "-c", DAEMON, str(target)], check=True)
    while not target.exists() or not target.read_text():
        time.sleep(0.01)
    if os.environ.get("BLOCK"):
        (HERE / "started").write_text("x")
        time.sleep(120)
"""


def _daemon_pids(path: Path) -> list[int]:
    return [int(p.read_text()) for p in path.glob("daemon-*.pid") if p.read_text()]


@pytest.fixture
def no_daemon_left(pytester: pytest.Pytester) -> Iterator[None]:
    """Even when a test fails, kill the daemons its inner run detached."""
    yield
    for pid in _daemon_pids(pytester.path):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if "time.sleep(300)" in " ".join(process.cmdline()):
                process.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreapers are a Linux feature")
@pytest.mark.parametrize("backend", ["process", "forked", "subprocess", "dask"])
@pytest.mark.usefixtures("no_daemon_left")
def test_detached_processes_end_with_a_normal_run(pytester: pytest.Pytester, tmp_path: Path, backend: str) -> None:
    if backend == "dask":
        pytest.importorskip("distributed")
    pytester.makeini(INNER_INI + "    -p no:xdist\n")
    pytester.makepyfile(test_detach=DETACHING)
    returncode, output = run_pytest_to_end(pytester.path, tmp_path, f"--executor-backend={backend}", "--executor-workers=1")
    assert returncode == 0, output
    daemons = _daemon_pids(pytester.path)
    assert len(daemons) == 1
    wait_for(lambda: not any(alive(pid) for pid in daemons), "the detached daemon to be killed", timeout=20)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreapers are a Linux feature")
@pytest.mark.parametrize("backend", ["process", "forked", "subprocess"])
@pytest.mark.usefixtures("no_daemon_left")
def test_detached_processes_end_after_the_controller_is_sigkilled(
    pytester: pytest.Pytester, tmp_path: Path, backend: str
) -> None:
    pytester.makeini(INNER_INI + "    -p no:xdist\n")
    pytester.makepyfile(test_detach=DETACHING)
    env_block = dict(os.environ, BLOCK="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", f"--executor-backend={backend}", "--executor-workers=1"],
        cwd=pytester.path, env={k: v for k, v in env_block.items() if not k.startswith("PYTEST_")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (pytester.path / "started").exists(), "the test to detach its daemon", timeout=90)
        tree = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    daemons = _daemon_pids(pytester.path)
    assert len(daemons) == 1
    wait_for(lambda: not any(alive(pid) for pid in [*daemons, *tree]), "the worker and its daemon to end", timeout=30)


KILLS_ITS_DASK_WORKER = """
import os
import signal
import time

import pytest


@pytest.mark.job(retries=0)
def test_kills_its_dask_worker():
    # the session is a worker of its host's process pool, forked by the pool's zygote, a child of the dask worker
    with open(f"/proc/{os.getppid()}/stat") as stat:
        os.kill(int(stat.read().rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
    time.sleep(60)  # the session dies with its host (lifeline) long before


@pytest.mark.parametrize("n", range(6))
def test_independent(n):
    pass
"""


def test_a_sigkilled_dask_worker_never_stalls_the_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    pytester.makeini(INNER_INI + "    -p no:xdist\n")
    pytester.makepyfile(test_dask_kill=KILLS_ITS_DASK_WORKER)
    _, output = run_pytest_to_end(pytester.path, tmp_path, "--executor-backend=dask", "--executor-workers=2", "-rA")
    assert "FAILED test_dask_kill.py::test_kills_its_dask_worker" in output, output
    assert "= 1 failed, 6 passed in " in output, output


CRASH_IN_EXCLUSIVE = """
import os
import pytest


def test_a():
    pass


@pytest.mark.job(after="test_a")
def test_b():
    pass


@pytest.mark.job(exclusive=True)
def test_exclusive_crash():
    os._exit(3)


@pytest.mark.job(exclusive=True)
def test_exclusive_next():
    pass


@pytest.mark.job(after="test_exclusive_crash")
def test_after_crash():
    pass


@pytest.mark.parametrize("n", range(8))
def test_independent(n):
    pass
"""


def test_xdist_worker_crash_with_after_and_exclusive_never_hangs(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A test re-sent after a crash never waits for a test that already waits for it."""
    pytest.importorskip("xdist")
    pytester.makeini(INNER_INI + "    -p no:randomly\n")
    pytester.makepyfile(test_crash=CRASH_IN_EXCLUSIVE)
    _, output = run_pytest_to_end(pytester.path, tmp_path, "-n", "2", "-rA")
    assert "FAILED test_crash.py::test_exclusive_crash" in output, output
    assert "= 1 failed, 11 passed, 1 skipped in " in output, output


KILLS_ITS_DASK_WORKER_BEFORE_ITS_START_IS_SENT = """
import os
import signal


def pytest_runtest_logstart(nodeid, location):
    # before the session tells its host that the item started: that news dies with the dask worker
    if nodeid.endswith("test_kills_its_dask_worker") and os.environ.get("PYTEST_EXECUTOR_WORKER"):
        with open(f"/proc/{os.getppid()}/stat") as stat:
            os.kill(int(stat.read().rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
        signal.pause()  # the session dies with its host (lifeline)
"""


def test_a_dask_worker_killed_before_an_items_start_was_relayed_fails_that_item_once(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    # as pytest-xdist does: the first item the lost session held is the one it crashed in; handed
    # out again, it would kill one dask worker after another
    pytest.importorskip("distributed")
    pytester.makeini(INNER_INI + "    -p no:xdist\n")
    pytester.makeconftest(KILLS_ITS_DASK_WORKER_BEFORE_ITS_START_IS_SENT)
    pytester.makepyfile(test_dask_kill=KILLS_ITS_DASK_WORKER.replace("    with open(", "    return\n    with open("))
    _, output = run_pytest_to_end(pytester.path, tmp_path, "--executor-backend=dask", "--executor-workers=2", "-rA")
    assert output.count(" lost: killed by signal SIGKILL") == 1, output
    # the short summary quotes a failure given as text only from pytest 9 on
    message = " - worker d" if pytest.version_tuple >= (9,) else "\n"
    assert "FAILED test_dask_kill.py::test_kills_its_dask_worker" + message in output, output
    assert "= 1 failed, 6 passed in " in output, output


def test_a_run_whose_tests_kill_one_dask_worker_after_another_ends(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # each kill starts a replacement session; at the end one may not have started yet (dask
    # cannot place it while the nannies restart their workers): the run must not wait for it
    pytest.importorskip("distributed")
    pytester.makeini(INNER_INI + "    -p no:xdist\n")
    pytester.makepyfile(test_dask_kill=KILLS_ITS_DASK_WORKER.replace(
        "@pytest.mark.job(retries=0)\n", '@pytest.mark.parametrize("k", range(5))\n').replace(
        "def test_kills_its_dask_worker():", "def test_kills_its_dask_worker(k):"))
    _, output = run_pytest_to_end(pytester.path, tmp_path, "--executor-backend=dask", "--executor-workers=2", "-rA",
                                  timeout=90)
    assert output.count(" lost: killed by signal SIGKILL") == 5, output
    assert "= 5 failed, 6 passed in " in output, output
