"""Process-exit handles (pidfds) and the checks built on them, shared by both packages.

A pidfd (Linux >= 5.3) is a file descriptor that becomes readable when its
process exits: a parent's event loop or ``select`` can wait for the exit of a
process without polling, and it cannot be fooled by pid reuse.  Where pidfds
are missing every function falls back to signals and ``/proc``.

Kept free of heavy imports: worker processes and the plugin import it early.
"""

from __future__ import annotations

import os
import select
import time


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux >= 5.3), or None where unsupported or the process is gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def close_pidfd(pidfd: int | None) -> None:
    """Close a pidfd from :func:`open_pidfd` (None is accepted and ignored)."""
    if pidfd is not None:
        try:
            os.close(pidfd)
        except OSError:
            pass


def pid_running(pid: int, pidfd: int | None = None) -> bool:
    """True while ``pid`` has not exited (a zombie awaiting its reaping counts as exited)."""
    if pidfd is not None:
        ready, _, _ = select.select([pidfd], [], [], 0)
        return not ready
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_exited(pid: int, pidfd: int | None, timeout: float) -> bool:
    """Wait until ``pid`` has exited (reaped or a zombie); False after ``timeout`` seconds."""
    if pidfd is not None:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    deadline = time.monotonic() + timeout
    while pid_running(pid):  # no pidfd (not Linux): the parent reaps within milliseconds
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


__all__ = ["close_pidfd", "open_pidfd", "pid_running", "wait_exited"]
