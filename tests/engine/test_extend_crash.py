"""A command outlives nothing: when the engine's process is SIGKILLed, its commands are stopped too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from executor.engine.job.extend._reaper import GRACE

from _engine_helpers import left_in_temp
from _extend_helpers import listening, processes_with, unique_sleep, wait_until

ENGINE_SCRIPT = textwrap.dedent("""
    import sys, threading
    from executor.engine import Engine, LocalJob, ProcessJob, ThreadJob
    from executor.engine.job.extend import SubprocessJob

    marker, base, started = sys.argv[1], sys.argv[2], sys.argv[3]
    base_class = {"LocalJob": LocalJob, "ThreadJob": ThreadJob, "ProcessJob": ProcessJob}[base]
    engine = Engine()
    engine.start()
    # a grandchild in the background, one in the foreground, and the shell: all in the command's group
    # record_cmd=False: a recorded command.sh is the user's (kept); this test checks the engine's own temp files
    engine.submit(SubprocessJob(f"(sleep {marker} &); touch {started}; sleep {marker}", base_class=base_class,
                                record_cmd=False))
    threading.Event().wait()  # until killed
""")


def sleepers(marker: str) -> list[psutil.Process]:
    """The ``sleep marker`` processes themselves (not the shell whose command line also names them)."""
    return [p for p in processes_with(marker) if p.cmdline() == ["sleep", marker]]


WEBAPP_SCRIPT = textwrap.dedent("""
    import sys, threading
    from executor.engine import Engine, ProcessJob, ThreadJob
    from executor.engine.job.extend import WebappJob

    marker, base, started = sys.argv[1], sys.argv[2], sys.argv[3]
    base_class = {"ThreadJob": ThreadJob, "ProcessJob": ProcessJob}[base]
    engine = Engine()
    engine.start()
    job = WebappJob(sys.executable + " -m http.server --bind {ip} {port} # " + marker, base_class=base_class)
    engine.submit(job)  # returns once the port answers
    with open(started, "w") as out:
        out.write(str(job.port))
    threading.Event().wait()  # until killed
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("base", ["ThreadJob", "ProcessJob"])
def test_sigkilled_engine_process_leaves_no_web_server_behind(base: str, tmp_path: Path) -> None:
    marker = unique_sleep()
    started = tmp_path / "started"
    engine_process = subprocess.Popen([sys.executable, "-c", WEBAPP_SCRIPT, marker, base, str(started)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: started.exists() and started.read_text().isdigit(), timeout=30)
        port = int(started.read_text())
        assert listening(port) and processes_with(marker)
    finally:
        engine_process.send_signal(signal.SIGKILL)
        engine_process.wait()
    assert wait_until(lambda: not processes_with(marker), timeout=GRACE + 10), processes_with(marker)
    assert wait_until(lambda: not listening(port), timeout=10)


def watchdogs_with(token: str) -> list[psutil.Process]:
    """Watchdog processes (see ``_reaper``) started by a process whose environment holds ``token``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "-I" in (process.info["cmdline"] or ()) and process.environ().get("CRASH_TEST_TOKEN") == token:
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("base", ["LocalJob", "ThreadJob", "ProcessJob"])
def test_sigkilled_engine_process_leaves_no_command_behind(base: str, tmp_path: Path) -> None:
    marker, token = unique_sleep(), uuid.uuid4().hex
    started = tmp_path / "started"
    temp = tmp_path / "tmp"  # the engine's temporary files: none may be left behind
    temp.mkdir()
    engine_process = subprocess.Popen(
        [sys.executable, "-c", ENGINE_SCRIPT, marker, base, str(started)],
        env={**os.environ, "CRASH_TEST_TOKEN": token, "TMPDIR": str(temp)}, stdout=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: started.exists() and len(sleepers(marker)) == 2, timeout=30)
        watchdogs = watchdogs_with(token)
        # one per process that started commands; with ProcessJob, the engine's too (for its pgid files)
        assert len(watchdogs) == (2 if base == "ProcessJob" else 1)
        assert engine_process.pid not in [w.ppid() for w in watchdogs]  # outside the engine's process tree
    finally:
        engine_process.send_signal(signal.SIGKILL)
        engine_process.wait()
    assert wait_until(lambda: not processes_with(marker), timeout=GRACE + 10), processes_with(marker)
    assert wait_until(lambda: not watchdogs_with(token), timeout=10)  # gone with the process it watched
    assert wait_until(lambda: not left_in_temp(temp), timeout=10), [(p.name, sorted(q.name for q in p.iterdir()) if p.is_dir() else "") for p in left_in_temp(temp)]


STOP_SCRIPT = textwrap.dedent("""
    import sys, threading
    from executor.engine import Engine
    from executor.engine.job.extend import SubprocessJob
    from executor.engine.job.extend._reaper import guard

    started, stopped = sys.argv[1], sys.argv[2]
    with Engine() as engine:
        job = SubprocessJob(f"touch {started}")
        engine.submit(job)
        engine.wait()
        table = guard()._table
        # the command ran guarded, and its group left the table once gone
        assert job.result() == 0 and table is not None and table[:] == bytes(len(table))
    assert guard()._table is None  # the last engine stopped: the watchdog was let go
    open(stopped, "w").close()
    threading.Event().wait()  # until killed
""")


def test_watchdog_goes_with_the_last_engine(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-c", STOP_SCRIPT, str(started), str(stopped)],
                               env={**os.environ, "CRASH_TEST_TOKEN": token})
    try:
        assert wait_until(lambda: stopped.exists() or process.poll() is not None, timeout=30)
        assert process.poll() is None and started.exists()
        assert wait_until(lambda: not watchdogs_with(token), timeout=10)  # while its process lives on
    finally:
        process.kill()
        process.wait()
