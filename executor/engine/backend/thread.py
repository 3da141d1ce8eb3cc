"""The thread backend: one reused ``ThreadPoolExecutor`` per engine, created on first use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import typing as T

from ..job.utils import call_sync


class ThreadBackend:
    """Runs calls on a lazily created, reused thread pool of ``max_workers`` threads."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The executor (created on first access)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="executor-job")
        return self._pool

    async def run(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> T.Any:
        """Run the call in a pool thread.

        On cancellation the awaiting side stops waiting; the thread itself cannot
        be interrupted and finishes its call, whose result is dropped.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(call_sync, func, args, kwargs))

    def submit(self, fn: T.Callable[..., T.Any], *args: T.Any) -> concurrent.futures.Future:
        """Run ``fn(*args)`` in the pool, returning a concurrent future."""
        return self.pool.submit(fn, *args)

    def shutdown(self) -> None:
        """Drop queued calls and wait for the running ones (threads cannot be killed)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
