"""Job types and conditions of the engine.

Names are imported on first use so that worker processes, which only need
:mod:`executor.engine.job.utils`, start quickly.
"""

from __future__ import annotations

import importlib
import typing as T

if T.TYPE_CHECKING:  # pragma: no cover
    from .base import Job, JobFuture
    from .local import LocalJob
    from .process import ProcessJob
    from .thread import ThreadJob
    from .dask import DaskJob

__all__ = ["Job", "JobFuture", "LocalJob", "ThreadJob", "ProcessJob", "DaskJob"]

_WHERE = {"Job": ".base", "JobFuture": ".base", "LocalJob": ".local",
          "ThreadJob": ".thread", "ProcessJob": ".process", "DaskJob": ".dask"}


def __getattr__(name: str) -> T.Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
