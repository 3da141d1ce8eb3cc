"""The default engine used by launchers when none is given.

``with Engine() as engine:`` makes ``engine`` the default inside the block;
otherwise :func:`set_default_engine` chooses one, or a fresh ``Engine()`` is
created on first use (and stopped at interpreter exit).
"""

from __future__ import annotations

import threading
import typing as T

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

_lock = threading.Lock()
_stack: list["Engine"] = []
_default: T.Optional["Engine"] = None
_created_here: T.Optional["Engine"] = None


def get_default_engine() -> "Engine":
    """The engine of the innermost ``with Engine()`` block, else the global default (created lazily)."""
    global _default, _created_here
    with _lock:
        if _stack:
            return _stack[-1]
        if _default is None:
            from ..core import Engine

            _default = _created_here = Engine()
        return _default


def set_default_engine(engine: "Engine") -> None:
    """Make ``engine`` the global default engine."""
    from ..core import Engine

    if not isinstance(engine, Engine):
        raise TypeError(f"set_default_engine expects an Engine, got {type(engine).__name__}")
    global _default
    with _lock:
        _default = engine


def is_auto_created(engine: "Engine") -> bool:
    """True for the default engine that :func:`get_default_engine` created by itself."""
    return engine is _created_here


def push_default_engine(engine: "Engine") -> int:
    """Make ``engine`` the default until :func:`pop_default_engine` (``with`` blocks)."""
    with _lock:
        _stack.append(engine)
        return len(_stack)


def pop_default_engine(token: int) -> None:
    """Undo the matching :func:`push_default_engine`."""
    with _lock:
        del _stack[token - 1:]
