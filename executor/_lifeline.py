"""Ending with the parent: the one place, shared by both packages, where a process learns its parent died.

Two ways to hear of it, both used:

* ``PR_SET_PDEATHSIG`` (Linux): the kernel sends a chosen signal when the
  parent *thread* dies.  :func:`die_with_parent` asks for SIGKILL (a worker
  with nothing of its own to clean up); :func:`end_tree_with_parent` asks for
  SIGTERM and handles it by killing this process's whole tree first
  (:func:`end_own_tree`): a process killed outright hands its children, and
  its process group, to init.
* a *lifeline* pipe (:func:`watch_lifeline`): the parent keeps the only write
  end; EOF means it is gone.  Portable, and it also works when the parent is
  not the process that should be watched (a controller beyond a relay).

The engine's zygote (:mod:`executor.engine.backend._process_worker`) uses
its own handler (it kills the process groups of every worker it forked); the
plugin's pytest sessions use :func:`end_tree_with_parent` or
:func:`watch_lifeline`.

Kept free of imports beyond the standard library's light modules: ``ctypes``
is loaded only when asked (the zygote passes the C library it loaded once).
"""

from __future__ import annotations

import os
import signal
import sys
import typing as T

from ._kill import kill_own_descendants, signal_group
from ._sigterm import handle_sigterm

if T.TYPE_CHECKING:  # pragma: no cover
    import threading

_PR_SET_PDEATHSIG = 1
ORPHAN_EXIT_CODE = 70
"""Exit code of a process that ended itself because its parent died."""
LIFELINE_THREAD = "executor-lifeline"
"""Name of the thread :func:`watch_lifeline` starts (the forked backend tells it from the tests' threads)."""


def _libc() -> T.Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except Exception:  # no C library through ctypes: no prctl
        return None


def die_with_parent(sig: int = signal.SIGKILL, libc: T.Any = None) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent thread dies; whether that is in effect.

    ``libc``: a ``ctypes.CDLL`` already loaded (else it is loaded here).
    Check ``os.getppid()`` afterwards: a parent that died before the call
    sends nothing.
    """
    libc = libc or _libc()
    if libc is None:
        return False
    try:
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(sig)) == 0)
    except Exception:  # best effort: EOF on the parent's pipes still ends idle processes
        return False


def end_own_tree(*_: T.Any) -> T.NoReturn:
    """Kill what this process started (detached ones too, if it is a subreaper) and its process group, then exit.

    Usable as a signal handler.
    """
    try:
        kill_own_descendants()
        if os.getpgid(0) == os.getpid():
            signal_group(os.getpid(), signal.SIGKILL)
    finally:
        os._exit(ORPHAN_EXIT_CODE)


def end_tree_with_parent(parent_pid: int | None = None) -> None:
    """When the parent dies, end this process and its whole tree (:func:`end_own_tree`) on SIGTERM.

    Must run on the main thread (it installs a SIGTERM handler).  With
    ``parent_pid`` (the parent expected), a parent already gone ends the tree now.
    """
    handle_sigterm(end_own_tree)
    die_with_parent(signal.SIGTERM)
    ppid = os.getppid()
    if ppid == 1 or (parent_pid is not None and ppid != parent_pid):  # it died before the prctl took effect
        end_own_tree()


def watch_lifeline(fd: int) -> "threading.Thread":
    """End this process's tree (:func:`end_own_tree`) once the pipe ``fd`` reaches EOF (a daemon thread)."""
    import threading

    os.set_inheritable(fd, False)  # a grandchild must not keep the parent's pipe open after we die

    def wait_for_eof() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        end_own_tree()

    thread = threading.Thread(target=wait_for_eof, name=LIFELINE_THREAD, daemon=True)
    thread.start()
    return thread


__all__ = ["LIFELINE_THREAD", "ORPHAN_EXIT_CODE", "die_with_parent", "end_own_tree", "end_tree_with_parent",
           "watch_lifeline"]
