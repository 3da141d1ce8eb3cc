"""A SIGTERM handler that children forked without exec do not keep.

A child forked by ``os.fork`` (a test's ``multiprocessing`` worker, say)
inherits the parent's signal dispositions.  With a Python-level handler,
SIGTERM no longer ends the child at the kernel's level: the C handler only
flags it for the interpreter, and a SIGTERM that lands between the ``fork``
and the interpreter's after-fork reset of those flags is lost.
``multiprocessing.Pool.terminate`` SIGTERMs its workers right after starting
them and then waits for them: such a loss hung it forever.

:func:`handle_sigterm` installs a handler and, once per process, fork hooks:
SIGTERM is blocked across the fork, and the child restores the default
disposition before unblocking it, so a SIGTERM sent meanwhile stays pending
and then ends the child as it would without the handler.
"""

from __future__ import annotations

import os
import signal
import threading
import typing as T

Handler = T.Callable[[int, T.Any], T.Any]

_ours: set[T.Any] = set()
"""The handlers installed through :func:`handle_sigterm` (compared with the current one at each fork)."""
_blocked = threading.local()
_hooked = False


def handle_sigterm(handler: Handler) -> None:
    """Install ``handler`` for SIGTERM in this process (main thread only); forked children get the default."""
    global _hooked
    _ours.add(handler)
    signal.signal(signal.SIGTERM, handler)
    if not _hooked:
        _hooked = True
        os.register_at_fork(before=_before_fork, after_in_parent=_unblock, after_in_child=_child_default)


def _before_fork() -> None:
    _blocked.on = signal.getsignal(signal.SIGTERM) in _ours
    if _blocked.on:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _unblock() -> None:
    if getattr(_blocked, "on", False):
        _blocked.on = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _child_default() -> None:
    if getattr(_blocked, "on", False):
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not the main thread: cannot happen in a forked child, whose only thread it is
            pass
    _unblock()


__all__ = ["handle_sigterm"]
