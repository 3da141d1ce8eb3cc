"""Ending processes, their process groups and their whole trees: the one place, shared by both packages.

Workers (the engine's process pool, the plugin's pytest sessions) each lead
a process group of their own, so one ``killpg`` reaches what a job started
without detaching.  On Linux a worker also marks itself a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): a process a job detaches (``setsid``,
double fork) is re-parented to the worker instead of to init, so it stays in
the worker's tree.  :func:`kill_tree` takes a snapshot of that tree *before*
killing anything (a killed parent hands its children on), then kills the
process group, the process and the snapshot.

What cannot be guaranteed: a worker that dies without running its cleanup
(SIGKILL, ``os._exit``, a segfault) hands its detached processes to the next
subreaper up, usually init, where nothing can tell them apart from any other
process.

Kept free of heavy imports (psutil is imported only by :func:`kill_tree`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

_PR_SET_CHILD_SUBREAPER = 36
WATCHDOG_FOLDER_PREFIX = "executor-cmd-"
"""Starts the name of a command watchdog's scratch folder (:mod:`executor.engine.job.extend._reaper`)."""


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to process ``pid``; False when it is gone (or not ours)."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists (or is not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` (SIGKILL) to the process group led by ``pid``, or to ``pid`` alone if it leads none."""
    if not signal_group(pid, sig):
        kill_pid(pid, sig)


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux only); whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _descendants(pid: int) -> list[object]:
    try:
        import psutil

        return list(psutil.Process(pid).children(recursive=True))
    except Exception:  # psutil missing, or the process is gone already
        return []


def kill_tree(pid: int, *, include_self: bool = True) -> None:
    """SIGKILL every descendant of ``pid`` (a snapshot taken first), its group, and ``pid`` itself.

    A command watchdog in the tree (a subreaper adopts it) dies too, before it
    could remove its owner's scratch folder: that folder is removed here.
    """
    descendants = _descendants(pid)
    folders = [folder for folder in map(_watchdog_folder, descendants) if folder is not None]
    if include_self:
        signal_group(pid, signal.SIGKILL)
        kill_pid(pid)
    for child in descendants:
        with contextlib.suppress(Exception):
            child.kill()  # type: ignore[attr-defined]
    for child in descendants:  # reap the ones that were ours (a subreaper adopts them)
        with contextlib.suppress(Exception):
            child.wait(timeout=1)  # type: ignore[attr-defined]
    for folder in folders:
        _remove_flat_folder(folder)


def _watchdog_folder(process: object) -> str | None:
    """The scratch folder of a command watchdog (its last argument), or None for any other process."""
    try:
        argv = process.cmdline()  # type: ignore[attr-defined]
    except Exception:  # gone, or not ours to read
        return None
    if len(argv) > 2 and "-c" in argv and os.path.basename(argv[-1]).startswith(WATCHDOG_FOLDER_PREFIX):
        return str(argv[-1])
    return None


def _remove_flat_folder(folder: str) -> None:
    """Remove ``folder`` and the files in it (no subfolders expected), ignoring what is already gone."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def kill_group_terminate_rest(pid: int) -> None:
    """SIGKILL the process group led by ``pid``; SIGTERM the descendants that left it (a snapshot first).

    For a parent that died: what a job started in its worker's group is
    killed; a process that detached itself is asked to end, so one that
    cleans up after its owner (a command watchdog ignores SIGTERM and acts
    on its owner's pipe closing) still can.
    """
    descendants = _descendants(pid)
    kill_group(pid)
    for child in descendants:
        with contextlib.suppress(Exception):
            child.terminate()  # type: ignore[attr-defined]


def has_children() -> bool:
    """Whether this process has a child, running or exited and not yet reaped (one system call).

    ``waitid`` with ``WNOWAIT`` reaps nothing: it fails with ECHILD when there
    is no child at all, which is what a worker checks after every forked test
    (listing ``/proc/self/task/*/children`` instead took a dozen calls).
    """
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # macOS before Python 3.13: cannot tell, so the caller looks the slow way
        return True
    try:
        waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def kill_own_descendants() -> None:
    """SIGKILL every process this one started (directly, or detached and adopted)."""
    kill_tree(os.getpid(), include_self=False)


def signal_name(number: int) -> str:
    """``SIGSEGV`` for 11; ``signal 99`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


__all__ = ["WATCHDOG_FOLDER_PREFIX", "become_subreaper", "has_children", "kill_group", "kill_group_terminate_rest", "kill_own_descendants", "kill_pid",
           "kill_tree", "signal_group", "signal_name"]
