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
from .job.utils import ACTIVE_STATUSES

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
        _cache_dir: T.Optional[Path]

        @property
        def cache_dir(self) -> Path: ...

        async def join(self, jobs: T.Optional[T.Sequence[Job]] = None,
                       timeout: T.Optional[float] = None) -> None: ...

        def _active_jobs(self) -> list[Job]: ...

        async def _on_loop_async_coro(self, func: T.Callable[..., T.Any], *args: T.Any) -> T.Any: ...

        async def _join_here(self, jobs: T.Optional[T.Sequence[Job]],
                             timeout: T.Optional[float]) -> None: ...

        _status_listeners: list[T.Callable[[Job, T.Any], None]]

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
        path = self.cache_dir
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
        """Async form of ``wait``: until no job (or none of those ``select_jobs`` picks) is pending or running.

        Returns False when ``timeout`` passed first (upstream returns None
        either way).  ``time_delta`` is accepted and unused: waiting is
        event-driven.  ``select_jobs`` takes the ``Jobs`` manager and returns
        jobs (upstream's form) or takes one job and returns a bool.
        """
        return bool(await self._on_loop_async_coro(self._wait_selected, timeout, select_jobs))

    async def _wait_selected(self, timeout: T.Optional[float],
                             select_jobs: T.Optional[T.Callable[..., T.Any]]) -> bool:
        """On the engine loop: wait until the selection holds no active job; False if ``timeout`` passed first."""
        if select_jobs is None:
            try:
                await self._join_here(None, timeout)
            except TimeoutError:
                return False
            return True
        pick = job_selector(self.jobs, select_jobs)
        changed = asyncio.Event()

        def on_status(_job: Job, _status: str) -> None:
            changed.set()

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # as upstream, the selection is asked again after every change (a job may enter or leave it)
        self._status_listeners.append(on_status)
        try:
            while pick(self._active_jobs()):
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    return not pick(self._active_jobs())
            return True
        finally:
            self._status_listeners.remove(on_status)


def job_selector(jobs: "Jobs", select_jobs: T.Callable[..., T.Any]) -> T.Callable[[list["Job"]], list["Job"]]:
    """The active jobs ``select_jobs`` picks, given the active jobs, whichever form ``select_jobs`` has.

    Upstream's form takes the ``Jobs`` manager and returns jobs; ours is a
    predicate on one job.  A callable that fails on the manager, or answers it
    with a bool or None, is taken for a predicate.
    """
    try:
        chosen = select_jobs(jobs)
    except Exception:
        chosen = None
    if isinstance(chosen, bool) or chosen is None:
        return lambda active: [job for job in active if select_jobs(job)]
    return lambda active: [job for job in select_jobs(jobs) if job.status in ACTIVE_STATUSES]
