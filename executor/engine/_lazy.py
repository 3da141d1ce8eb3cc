"""Lazy re-exports (PEP 562) for the engine's packages, built from one table.

Worker processes import only small submodules; a package's public names are
imported on first use so that importing the package itself stays cheap.
"""

from __future__ import annotations

import importlib
import typing as T

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: T.Mapping[str, str]) -> tuple[T.Callable[[str], T.Any], T.Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    ``where`` maps each public name to the (relative) module that defines it;
    the package's ``__all__`` is built from the same table.
    """
    namespace = vars(importlib.import_module(package))

    def __getattr__(name: str) -> T.Any:
        if name in where:
            value = getattr(importlib.import_module(where[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
