"""Errors and small helpers shared by the engine, under executor-engine's names.

Standard library only at import time (worker processes import the job
layer, which takes its base error from here).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import typing as T

__all__ = [
    "ExecutorError", "CheckError", "TypeCheckError", "RangeCheckError", "CheckAttrRange", "CheckAttrType",
    "PortManager", "get_callable_name",
]


class ExecutorError(Exception):
    """Base of the engine's own errors."""


class CheckError(ExecutorError):
    """An attribute got a value it does not accept."""


class TypeCheckError(CheckError, TypeError):
    """An attribute got a value of the wrong type (a ``TypeError`` too)."""


class RangeCheckError(CheckError, ValueError):
    """An attribute got a value outside its valid range (a ``ValueError`` too)."""


class CheckAttrRange:
    """A descriptor that stores into ``attr`` only values in ``valid_range`` (else :class:`RangeCheckError`)."""

    valid_range: T.Iterable[T.Any] = []
    attr = "__"

    def __get__(self, obj: T.Any, objtype: T.Optional[type] = None) -> T.Any:
        return getattr(obj, self.attr)

    def check(self, obj: T.Any, value: T.Any) -> None:
        """Raise :class:`RangeCheckError` unless ``value`` is in ``valid_range``."""
        valid = list(self.valid_range)
        if value not in valid:
            raise RangeCheckError(f"{type(obj).__name__}.{self.attr.lstrip('_')} must be one of {valid}, "
                                  f"got {value!r}")

    def __set__(self, obj: T.Any, value: T.Any) -> None:
        self.check(obj, value)
        setattr(obj, self.attr, value)


class CheckAttrType:
    """A descriptor that stores into ``attr`` only values passing one of ``valid_type`` (types or predicates)."""

    valid_type: T.List[T.Union[T.Callable[[T.Any], bool], type]] = []
    attr = "__"

    def __get__(self, obj: T.Any, objtype: T.Optional[type] = None) -> T.Any:
        return getattr(obj, self.attr)

    def __set__(self, obj: T.Any, value: T.Any) -> None:
        ok = any(isinstance(value, tp) if isinstance(tp, type) else tp(value) for tp in self.valid_type)
        if not ok:
            raise TypeCheckError(f"{type(obj).__name__}.{self.attr.lstrip('_')} must be of {self.valid_type}, "
                                 f"got {type(value).__name__}")
        setattr(obj, self.attr, value)


class PortManager:
    """Free local TCP ports, remembering the ones handed out so that two jobs do not get the same one."""

    used_port: T.Set[int] = set()
    _lock = threading.Lock()

    @classmethod
    def get_port(cls) -> int:
        """A free port not handed out before (marked used until :meth:`release_port`)."""
        while True:
            port = cls.find_free_port()
            with cls._lock:
                if port not in cls.used_port:
                    cls.used_port.add(port)
                    return port

    @classmethod
    def consume_port(cls, port: int) -> None:
        """Mark ``port`` used."""
        with cls._lock:
            cls.used_port.add(port)

    @classmethod
    def release_port(cls, port: int) -> None:
        """Mark ``port`` free again."""
        with cls._lock:
            cls.used_port.discard(port)

    @staticmethod
    def find_free_port() -> int:
        """A port the OS reports free on this machine now."""
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    @staticmethod
    def process_has_port(target_pid: int, ip: str, port: int) -> bool:
        """True when process ``target_pid`` listens on ``ip``:``port``."""
        import psutil

        connections = psutil.Process(target_pid).net_connections()
        return any((c.laddr.ip, c.laddr.port) == (ip, port) for c in connections if c.laddr)


def get_callable_name(callable: T.Any) -> str:
    """The name of a function, through wrappers that keep the wrapped one in ``.func``."""
    while hasattr(callable, "func"):
        callable = callable.func
    name = getattr(callable, "__name__", None)
    return name if isinstance(name, str) else type(callable).__name__
