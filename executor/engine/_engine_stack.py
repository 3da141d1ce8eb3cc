"""The stack of engines entered with ``with Engine()``: the innermost is the launchers' default.

Kept apart from :mod:`executor.engine.launcher.default` so that the engine can
push and pop itself without importing the launchers (which import the engine).
"""

from __future__ import annotations

import threading
import typing as T

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import Engine

__all__ = ["innermost_engine", "pop_default_engine", "push_default_engine"]

_lock = threading.RLock()
_stack: list["Engine"] = []


def push_default_engine(engine: "Engine") -> int:
    """Make ``engine`` the default until :func:`pop_default_engine` (``with`` blocks)."""
    with _lock:
        _stack.append(engine)
        return len(_stack)


def pop_default_engine(token: int) -> None:
    """Undo the matching :func:`push_default_engine`."""
    with _lock:
        del _stack[token - 1:]


def innermost_engine() -> T.Optional["Engine"]:
    """The engine of the innermost ``with Engine()`` block, if any."""
    with _lock:
        return _stack[-1] if _stack else None
