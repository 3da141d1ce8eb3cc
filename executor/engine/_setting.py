"""The engine's settings: :class:`EngineSetting` (imported by users from ``executor.engine.core``)."""

from __future__ import annotations

import typing as T
from dataclasses import dataclass

__all__ = ["EngineSetting"]


@dataclass
class EngineSetting:
    """Limits and options of an :class:`Engine`.

    Attributes:
        max_thread_jobs: running ThreadJobs at most (None: only ``max_jobs`` limits).
        max_process_jobs: running ProcessJobs at most, i.e. the process pool size.
        max_dask_jobs: running DaskJobs at most.
        max_jobs: running jobs of all kinds at most (None: unlimited).
        cache_type: ``"none"`` or ``"diskcache"`` (persist jobs in an SQLite store).
        cache_path: directory for job cache dirs and the store
            (default: ``<system temp dir>/executor-engine-<uid>/<engine id>``,
            created only when needed; never the working directory).
        print_traceback: log the traceback of failed jobs (at ERROR level).
        kwargs_inject_key: a job function taking a keyword of this name gets the engine.
        fork_zygote: let ``start()`` fork the process pool's zygote from this
            process, if it is single-threaded at that moment (before the
            engine's own thread starts), so that the first ProcessJobs do not
            wait for a new interpreter (a cold pool then starts as fast as a
            forked ``ProcessPoolExecutor``).  True: whenever it is safe.
            None (default): whenever it is safe and ProcessJobs may run, i.e.
            ``max_process_jobs`` is set or :class:`ProcessJob` has been
            imported by then (a fork and, at ``stop()``, reaping the unused
            zygote cost an engine that never runs a ProcessJob a few
            milliseconds).  False: never; the pool then starts its zygote with
            ``python -c`` on first use, as it does when forking is unsafe
            (other threads alive, not Linux).  In async use without ``start()``
            the zygote is forked on the first ProcessJob, if the loop's thread
            is the only one then.
        max_caller_jobs: running CallerJobs at most (default 1: their bodies
            run on the thread(s) waiting for the engine, one at a time on each;
            a CallerJob holds its slot from the moment it starts, so a higher
            limit only helps when several threads wait at once).
    """

    max_thread_jobs: T.Optional[int] = None
    max_process_jobs: T.Optional[int] = None
    max_dask_jobs: T.Optional[int] = None
    max_jobs: T.Optional[int] = 20
    cache_type: T.Literal["none", "diskcache"] = "none"
    cache_path: T.Optional[str] = None
    print_traceback: bool = True
    kwargs_inject_key: str = "__engine__"
    fork_zygote: T.Optional[bool] = None
    max_caller_jobs: T.Optional[int] = 1

    def __post_init__(self) -> None:
        for name in ("max_thread_jobs", "max_process_jobs", "max_dask_jobs", "max_jobs", "max_caller_jobs"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EngineSetting.{name} must be a positive int or None, got {value!r}")
        if self.cache_type not in ("none", "diskcache"):
            raise ValueError(f"EngineSetting.cache_type must be 'none' or 'diskcache', got {self.cache_type!r}")
        if not isinstance(self.kwargs_inject_key, str):
            raise TypeError(f"EngineSetting.kwargs_inject_key must be a str, got {self.kwargs_inject_key!r}")
        if self.fork_zygote is not None and not isinstance(self.fork_zygote, bool):
            raise TypeError(f"EngineSetting.fork_zygote must be True, False or None, got {self.fork_zygote!r}")

    def limit_for(self, kind: str) -> T.Optional[int]:
        """The running-jobs limit of a resource kind (``max_<kind>_jobs``), capped by ``max_jobs``."""
        own = getattr(self, f"max_{kind}_jobs", None)
        if own is None:
            return self.max_jobs
        return own if self.max_jobs is None else min(own, self.max_jobs)
