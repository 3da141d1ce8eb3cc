"""Waiting on real processes and files in the plugin's fault tests (bounded polls, never bare sleeps)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def spawn_pytest(path: Path, tmpdir: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m pytest *args`` in ``path`` with its own TMPDIR and no inherited PYTEST_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args], cwd=path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def run_pytest_to_end(path: Path, tmpdir: Path, *args: str, timeout: float = 120.0) -> tuple[int, str]:
    """Run :func:`spawn_pytest` to its end: its exit code and output; a run still going after ``timeout`` is killed."""
    proc = spawn_pytest(path, tmpdir, *args)
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, output
