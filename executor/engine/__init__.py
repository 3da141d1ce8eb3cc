"""executor.engine: submit callables, commands and web apps as jobs and run them
in-process, on threads, on a warm process pool or on a dask cluster.

Public names are imported on first use (PEP 562) so that worker processes,
which import only small submodules, start quickly.
"""

from __future__ import annotations

import typing as T

from ._lazy import lazy_exports

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import Engine, EngineSetting
    from .job.base import Job, JobFuture
    from .job.dask import DaskJob
    from .job.local import LocalJob
    from .job.process import ProcessJob
    from .job.thread import ThreadJob
    from .manager import Jobs
    from .job.caller import CallerJob
    from .job.utils import JobTimeoutError
    from .state import WorkerState

__version__ = "0.3.3"
"""The executor-engine API version this engine is a drop-in for (the package's own version is pytest-executor's)."""

_WHERE = {
    "Engine": ".core", "EngineSetting": ".core", "Job": ".job.base", "JobFuture": ".job.base",
    "LocalJob": ".job.local", "ThreadJob": ".job.thread", "ProcessJob": ".job.process",
    "DaskJob": ".job.dask", "Jobs": ".manager", "CallerJob": ".job.caller", "JobTimeoutError": ".job.utils",
    "WorkerState": ".state",
}
"""Each public name and the module that defines it: the one table behind ``__all__`` and the lazy imports."""

__all__ = list(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
