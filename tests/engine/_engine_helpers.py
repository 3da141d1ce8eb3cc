"""Helpers shared by the engine tests (functions importable by worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Block (inside a job) until ``path`` exists; used to hold a job running without sleeps in the test."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return Path(path).read_text()


def touch_then_wait(started: str, release: str) -> int:
    """Signal ``started`` (a file) then wait for ``release``; returns the worker pid."""
    tmp = Path(started + ".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.rename(started)  # atomic: the test never reads a half-written file
    wait_for_file(release)
    return os.getpid()


def pid() -> int:
    return os.getpid()


def pid_alive(p: int) -> bool:
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); look at its state
        with open(f"/proc/{p}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def left_in_temp(temp: Path) -> list[Path]:
    """What an engine left in the temp dir ``temp``, but the empty private per-user cache root.

    That root (``executor-engine-<uid>``, 0700) is created at engine start and
    kept, as pytest keeps ``pytest-of-<user>``: only its contents count as litter.
    """
    root = temp / f"executor-engine-{os.getuid()}"
    return sorted(p for p in temp.iterdir() if p != root or any(p.iterdir()))
