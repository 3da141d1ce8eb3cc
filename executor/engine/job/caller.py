"""CallerJob: a job whose body runs on the thread that waits for the engine.

See :mod:`executor.engine._caller` for why (a pytest run must execute each
test's protocol on its main thread, the one blocked waiting for the run) and
how: the body is posted to the engine's caller lane and run by whichever
thread is inside ``engine.wait()``, ``engine.wait_job()``, ``job.wait()`` or
``engine.serve_caller()``.
"""

from __future__ import annotations

import asyncio
import typing as T

from ._routes import ON_CALLER, register_route
from .base import GeneratorDriver, Job
from .utils import JobTimeoutError, is_generator_function

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

__all__ = ["CallerJob"]


class CallerJob(Job):
    """A job run on the thread waiting for the engine; limited by ``EngineSetting.max_caller_jobs`` (default 1).

    Conditions, dependencies (``JobFuture`` arguments), retries and
    ``exclusive`` work as for any job.  The job is ``running`` from the moment
    it holds its slot; its body starts as soon as a thread waits (in
    ``engine.wait()``, ``engine.wait_job()``, ``job.wait()`` or
    ``engine.serve_caller()``); with no thread waiting it stays queued.
    A thread cannot be interrupted, so:

    * cancelling the job while its body runs marks it cancelled at once; the
      body runs to its end and its result is dropped;
    * ``timeout``: a body still queued when the time is up is withdrawn; a body
      that is running is waited for, and the attempt then fails with
      :class:`~executor.engine.job.utils.JobTimeoutError` (``retries`` apply).
      The slot stays taken until the body returned, so an exclusive job stays
      alone.

    Coroutine functions are run to completion on the waiting thread
    (``asyncio.run``); generator functions are refused (use LocalJob).
    """

    resource_kind = "caller"

    def prepare(self, engine: "Engine") -> None:
        """Refuse generator functions: their steps would run on whichever thread iterates them."""
        if is_generator_function(self.func):
            raise TypeError(f"CallerJob {self.name}: generator functions cannot run as caller jobs; use LocalJob")

    async def start_generator(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> GeneratorDriver:
        """Generators never reach here (see :meth:`prepare`)."""
        raise TypeError(f"CallerJob {self.name}: generator functions cannot run as caller jobs")

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Post the call to the engine's caller lane and await its result."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        assert self.engine is not None
        body = self.engine._callers.post(func, args, kwargs)
        try:
            return await _outcome(asyncio.wrap_future(body))
        except asyncio.CancelledError:
            # withdrawn if no thread took it yet (wrap_future cancels it); else it runs on
            if body.cancelled() or not self._timed_out or self._status != "running":
                raise
        try:  # timed out while running on its thread: wait for it, then fail the attempt
            await _outcome(asyncio.wrap_future(body))
        except Exception as exc:
            raise JobTimeoutError.for_job(self) from exc
        raise JobTimeoutError.for_job(self)


async def _outcome(future: "asyncio.Future[T.Any]") -> T.Any:
    """The body's result; Ctrl-C or SystemExit in the body belongs to its thread: here it fails the job."""
    try:
        return await future
    except (KeyboardInterrupt, SystemExit) as exc:
        raise RuntimeError(f"the body was interrupted by {exc!r} on its thread") from exc


def _caller_route(cls: type) -> int:
    """Classes keeping CallerJob's ``run_function`` (and Job's ``_execute``) may run as plain caller calls."""
    if cls.run_function is not CallerJob.run_function or cls._execute is not Job._execute:  # type: ignore[attr-defined]
        return 0
    return ON_CALLER


register_route(CallerJob, _caller_route)
