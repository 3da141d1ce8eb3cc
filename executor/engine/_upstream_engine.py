"""The parts of executor-engine 0.3.3's ``Engine`` API that our engine does not need itself.

:class:`UpstreamEngineAPI` is mixed into :class:`~executor.engine.core.Engine`:
upstream's ``resource`` counters, ``print_traceback``, ``setup_by_setting``,
``get_cache_dir`` and ``wait_async``, with upstream's signatures.
"""

from __future__ import annotations

import asyncio
import os
import typing as T
from dataclasses import dataclass
from pathlib import Path

from .base import ExecutorObj

if T.TYPE_CHECKING:  # pragma: no cover
    from .core import EngineSetting
    from .job.base import Job
    from .manager import Jobs

__all__ = ["Resource", "UpstreamEngineAPI"]


@dataclass
class Resource:
    """Free slots per kind of job (``inf``: no limit), as upstream's engine counts them.

    The engine's scheduler limits its own job types; these counters are the
    ones a job type written the upstream way checks and changes in its
    ``has_resource``/``consume_resource``/``release_resource`` hooks.
    """

    n_thread: T.Union[int, float]
    n_process: T.Union[int, float]
    n_dask: T.Union[int, float]
    n_job: T.Union[int, float]


class UpstreamEngineAPI(ExecutorObj):
    """Upstream's engine methods, mixed into :class:`~executor.engine.core.Engine`."""

    if T.TYPE_CHECKING:  # pragma: no cover
        setting: EngineSetting
        jobs: Jobs
        resource: Resource
        print_traceback: bool
        _cache_dir: Path

        async def join(self, jobs: T.Optional[T.Sequence[Job]] = None,
                       timeout: T.Optional[float] = None) -> None: ...

        def _active_jobs(self) -> list[Job]: ...

        async def _on_loop_async_coro(self, func: T.Callable[..., T.Any], *args: T.Any) -> T.Any: ...

        async def _join_here(self, jobs: T.Optional[T.Sequence[Job]],
                             timeout: T.Optional[float]) -> None: ...

    def setup_by_setting(self) -> None:
        """(Re)read ``self.setting``: resource counters and ``print_traceback``."""
        setting = self.setting
        self.resource = Resource(
            n_thread=setting.max_thread_jobs or float("inf"),
            n_process=setting.max_process_jobs or float("inf"),
            n_dask=setting.max_dask_jobs or float("inf"),
            n_job=setting.max_jobs or float("inf"),
        )
        self.print_traceback = setting.print_traceback

    def get_cache_dir(self) -> Path:
        """The engine's cache dir, created now (private, 0700) if it does not exist yet.

        Job ``<id>`` keeps its files (``stdout.txt``, ``stderr.txt``,
        ``command.sh``) in ``get_cache_dir() / <id>``, as upstream.
        """
        path = self._cache_dir
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            if self.setting.cache_path is None:  # our own default dir: private
                os.chmod(path, 0o700)
        return path

    async def wait_async(
        self,
        timeout: T.Optional[float] = None,
        time_delta: float = 0.2,
        select_jobs: T.Optional[T.Callable[..., T.Any]] = None,
    ) -> bool:
        """Async form of ``wait``: until all jobs (or those ``select_jobs`` picks) finished.

        Returns False when ``timeout`` passed first (upstream returns None
        either way).  ``time_delta`` is accepted and unused: waiting is
        event-driven.  ``select_jobs`` takes the ``Jobs`` manager and returns
        jobs (upstream's form) or takes one job and returns a bool.
        """
        jobs = None if select_jobs is None else select_active(self._active_jobs(), self.jobs, select_jobs)
        try:
            # join() swallows the timeout (as upstream); its inner wait tells us which it was
            await self._on_loop_async_coro(self._join_here, jobs, timeout)
        except TimeoutError:
            return False
        return True


def select_active(active: list["Job"], jobs: "Jobs", select_jobs: T.Callable[..., T.Any]) -> list["Job"]:
    """The jobs to wait for: upstream's ``select_jobs(jobs_manager) -> jobs`` or a per-job predicate."""
    try:
        chosen = select_jobs(jobs)
    except Exception:
        chosen = None
    if isinstance(chosen, bool) or chosen is None:
        return [job for job in active if select_jobs(job)]
    return [job for job in chosen if job.status in ("pending", "running")]
