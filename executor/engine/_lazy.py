"""Lazy re-exports (PEP 562) for the engine's packages, built from one table.

Worker processes import only small submodules; a package's public names are
imported on first use so that importing the package itself stays cheap.
"""

from __future__ import annotations

import importlib
import typing as T

__all__ = ["lazy_exports", "load_lazy_exports"]

_TABLES: dict[str, T.Mapping[str, str]] = {}
"""Every package made lazy by :func:`lazy_exports`, and its table."""


def lazy_exports(package: str, where: T.Mapping[str, str]) -> tuple[T.Callable[[str], T.Any], T.Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    ``where`` maps each public name to the (relative) module that defines it;
    the package's ``__all__`` is built from the same table.
    """
    namespace = vars(importlib.import_module(package))
    _TABLES[package] = where

    def __getattr__(name: str) -> T.Any:
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__


def load_lazy_exports() -> None:
    """Import every lazy name of every lazy package now.

    A process that forks a child per test calls this once before its first
    fork: a child that walks the package's names (``dir()`` then ``getattr``,
    as freezegun does over every module on each start) would otherwise import
    the engine's modules again in every child, and throw them away with it.
    """
    done: set[str] = set()
    while pending := [package for package in _TABLES if package not in done]:  # loading may make more lazy
        for package in pending:
            done.add(package)
            module = importlib.import_module(package)
            for name in _TABLES[package]:
                getattr(module, name)
