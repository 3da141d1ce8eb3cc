"""One way to end a worker and everything it started, detached processes included.

On Linux every worker session marks itself a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): a process a test detaches (``setsid``,
double fork) is re-parented to the worker instead of to init, so it stays in
the worker's tree.  :func:`kill_tree` takes a snapshot of that tree *before*
killing anything (a killed parent hands its children on), then kills the
process group, the process and the snapshot.  It is the only cleanup path:
the controller uses it on a worker, a worker on itself when its session ends
or its controller dies, the dask host task on its session.

What cannot be guaranteed: a worker that dies without running its cleanup
(SIGKILL, ``os._exit``, a segfault) hands its detached processes to the next
subreaper up, usually init, where nothing can tell them apart from any other
process; and after a SIGKILL of the controller only the workers' lifeline
(EOF on a pipe) remains, so each worker's tree is killed by the worker itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

_PR_SET_CHILD_SUBREAPER = 36


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
    """SIGKILL every descendant of ``pid`` (a snapshot taken first), its group, and ``pid`` itself."""
    descendants = _descendants(pid)
    if include_self:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(Exception):
            child.kill()  # type: ignore[attr-defined]
    for child in descendants:  # reap the ones that were ours (a subreaper adopts them)
        with contextlib.suppress(Exception):
            child.wait(timeout=1)  # type: ignore[attr-defined]


def kill_own_descendants() -> None:
    """SIGKILL every process this one started (directly, or detached and adopted)."""
    kill_tree(os.getpid(), include_self=False)


__all__ = ["become_subreaper", "kill_own_descendants", "kill_tree"]
