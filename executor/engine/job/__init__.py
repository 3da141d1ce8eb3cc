"""Job types and conditions of the engine.

Names are imported on first use so that worker processes, which only need
:mod:`executor.engine.job.utils`, start quickly.
"""

from __future__ import annotations

import typing as T

from .._lazy import lazy_exports

if T.TYPE_CHECKING:  # pragma: no cover
    from .base import Job, JobFuture
    from .local import LocalJob
    from .process import ProcessJob
    from .thread import ThreadJob
    from .dask import DaskJob
    from .caller import CallerJob
    from .utils import JobTimeoutError

_WHERE = {"Job": ".base", "JobFuture": ".base", "LocalJob": ".local",
          "ThreadJob": ".thread", "ProcessJob": ".process", "DaskJob": ".dask",
          "CallerJob": ".caller", "JobTimeoutError": ".utils"}
"""Each public name and the module that defines it: the one table behind ``__all__`` and the lazy imports."""

__all__ = list(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
