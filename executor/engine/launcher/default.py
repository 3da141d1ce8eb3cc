"""The default engine used by launchers when none is given.

``with Engine() as engine:`` makes ``engine`` the default inside the block;
otherwise :func:`set_default_engine` chooses one, or a fresh ``Engine()`` is
created on first use (and stopped at interpreter exit).
"""

from __future__ import annotations

import threading
import typing as T

from .._engine_stack import innermost_engine, pop_default_engine, push_default_engine
from ..core import Engine

__all__ = ["get_default_engine", "is_auto_created", "pop_default_engine", "push_default_engine",
           "set_default_engine"]

_lock = threading.Lock()
_default: T.Optional[Engine] = None
_created_here: T.Optional[Engine] = None


def get_default_engine() -> Engine:
    """The engine of the innermost ``with Engine()`` block, else the global default (created lazily)."""
    global _default, _created_here
    inner = innermost_engine()
    if inner is not None:
        return inner
    with _lock:
        if _default is None:
            _default = _created_here = Engine()
        return _default


def set_default_engine(engine: Engine) -> None:
    """Make ``engine`` the global default engine."""
    if not isinstance(engine, Engine):
        raise TypeError(f"set_default_engine expects an Engine, got {type(engine).__name__}")
    global _default
    with _lock:
        _default = engine


def is_auto_created(engine: Engine) -> bool:
    """True for the default engine that :func:`get_default_engine` created by itself."""
    return engine is _created_here
