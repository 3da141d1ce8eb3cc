"""SIGTERM ends a run the way Ctrl-C does: every cleanup path runs.

Without this, SIGTERM kills the controller outright: no ``finally``, no
``pytest_unconfigure``, so workers and the run's temporary directories are
left behind.  Only a default handler is replaced (a handler the user or
another plugin installed wins), and only in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from executor._sigterm import handle_sigterm


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise ``KeyboardInterrupt``; return the function that restores the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None
    handle_sigterm(_interrupt)  # children forked by tests keep SIGTERM's default (see executor._sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


__all__ = ["sigterm_as_interrupt"]
