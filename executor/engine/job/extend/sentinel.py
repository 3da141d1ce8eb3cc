"""SentinelJob: submit a job each time a condition becomes true."""

from __future__ import annotations

import asyncio
import time
import typing as T
from datetime import datetime

from ...log import logger
from ..base import Job, check_call_args
from ..condition import Condition, EveryPeriod
from ..local import LocalJob
from ._cron_conditions import ScheduleTick, arm_ticks, checked_at, condition_members, consume_ticks

if T.TYPE_CHECKING:  # pragma: no cover
    from ...core import Engine

__all__ = ["SentinelJob"]

#: smallest pause between two checks, so a condition that claims to change "now" cannot spin the loop
_MIN_PAUSE = 0.001


class SentinelJob(LocalJob):
    """A job that watches ``sentinel_condition`` and submits a new job each time it becomes true.

    Args:
        func: the function each submitted job runs (for ``job_type="subprocess"``:
            the command string).
        sentinel_condition: any :class:`Condition`. Schedule ticks (``every``,
            ``daily``, ... from :mod:`executor.engine.job.extend.cron`) and the
            engine's ``EveryPeriod`` fire at each of their times; other
            conditions fire when they turn from false to true.
        job_type: ``"local"``, ``"thread"``, ``"process"`` (default),
            ``"dask"``, ``"subprocess"`` or a Job subclass.
        time_delta: re-check period of opaque (custom) conditions, in seconds
            (the sentinel's ``wait_time_delta``).
        sentinel_attrs: :class:`Job` arguments of the sentinel itself (``name``, ...).
        args, kwargs: arguments of ``func`` in each submitted job.
        job_kwargs: more keyword arguments for each submitted job (``retries``, ...).
        max_fires: stop (``done``) after submitting this many jobs; None = until cancelled.
        **attrs: more keyword arguments for each submitted job (as upstream;
            merged with ``job_kwargs``).

    The sentinel runs on the engine loop and takes one ``max_jobs`` slot.
    It never polls what it can be told: it sleeps until the condition's next
    change time, wakes on status changes of the jobs the condition names, and
    re-checks opaque (custom) conditions every ``wait_time_delta`` seconds.
    Its result (with ``max_fires``) is the list of submitted job ids;
    ``fired_jobs`` holds the jobs themselves.
    """

    def __init__(
        self,
        func: T.Union[T.Callable[..., T.Any], str],
        sentinel_condition: Condition,
        job_type: T.Union[str, type[Job]] = "process",
        time_delta: float = 0.01,
        sentinel_attrs: T.Optional[dict] = None,
        args: T.Optional[T.Sequence[T.Any]] = None,
        kwargs: T.Optional[T.Mapping[str, T.Any]] = None,
        job_kwargs: T.Optional[T.Mapping[str, T.Any]] = None,
        max_fires: T.Optional[int] = None,
        **attrs: T.Any,
    ) -> None:
        from ...launcher.core import resolve_job_type

        if sentinel_attrs is not None and not isinstance(sentinel_attrs, dict):
            raise TypeError(f"sentinel_attrs must be a dict of Job arguments for the sentinel, got {sentinel_attrs!r}")
        sentinel_kwargs: dict[str, T.Any] = {"wait_time_delta": time_delta, **(sentinel_attrs or {})}
        if attrs:
            if job_kwargs is not None and not isinstance(job_kwargs, T.Mapping):
                raise TypeError(f"job_kwargs must be a dict of Job arguments, got {job_kwargs!r}")
            job_kwargs = {**(job_kwargs or {}), **attrs}

        if not isinstance(sentinel_condition, Condition):
            raise TypeError(
                f"sentinel_condition must be a Condition (e.g. every('10s')), got {type(sentinel_condition).__name__}"
            )
        self.job_class = resolve_job_type(job_type)
        if job_kwargs is not None and not isinstance(job_kwargs, T.Mapping):
            raise TypeError(f"job_kwargs must be a dict of Job arguments, got {job_kwargs!r}")
        check_call_args(args, kwargs)  # before they are copied: a string would pass as a tuple of letters
        self.target = func
        self.target_args = tuple(args or ())
        self.target_kwargs = dict(kwargs or {})
        self.job_kwargs = dict(job_kwargs or {})
        _check_target(func, self.job_class)
        self._check_jobs_can_be_made()
        if max_fires is not None and (not isinstance(max_fires, int) or isinstance(max_fires, bool) or max_fires < 1):
            raise ValueError(f"max_fires must be an int >= 1 or None, got {max_fires!r}")
        self.sentinel_condition = sentinel_condition
        self.max_fires = max_fires
        self.fired_jobs: list[Job] = []
        target_name = func if isinstance(func, str) else getattr(func, "__name__", type(func).__name__)
        sentinel_kwargs.setdefault("name", f"{type(self).__name__.lower()}:{target_name}")
        super().__init__(_watch_placeholder, **sentinel_kwargs)

    def make_job(self) -> Job:
        """A fresh job of ``job_type`` running the target once."""
        from .subprocess import SubprocessJob

        if issubclass(self.job_class, SubprocessJob):
            return self.job_class(T.cast(str, self.target), **self.job_kwargs)
        return self.job_class(T.cast(T.Callable[..., T.Any], self.target), args=self.target_args,
                              kwargs=self.target_kwargs, **self.job_kwargs)

    def _check_jobs_can_be_made(self) -> None:
        """Make one job now (and drop it), so a mistake in ``job_kwargs`` shows here, not at the first fire."""
        try:
            self.make_job()
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{type(self).__name__} cannot make its {self.job_class.__name__}s from job_kwargs="
                f"{self.job_kwargs!r}: {error}"
            ) from None

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Watch the condition until cancelled (or until ``max_fires`` jobs were submitted)."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        engine = self.engine
        assert engine is not None
        condition = self.sentinel_condition
        arm_ticks(condition)
        wake = asyncio.Event()
        watched = condition.waits_for()

        def on_status(job: Job, _status: str) -> None:
            if job.id in watched:
                wake.set()

        engine.add_listener(on_status)
        self.fired_jobs = []
        was_true = False
        try:
            while self.max_fires is None or len(self.fired_jobs) < self.max_fires:
                wake.clear()
                value, ticked = _check(condition, engine)
                if value and (ticked or not was_true):
                    await self._fire(engine)
                was_true = value
                if self.max_fires is not None and len(self.fired_jobs) >= self.max_fires:
                    break
                delay = _next_wake_delay(condition, self.wait_time_delta)
                if delay is None and not watched:
                    logger.info(f"sentinel {self.name}: its condition can never change again; stopping")
                    break
                try:
                    await asyncio.wait_for(wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            engine.remove_listener(on_status)
        return [job.id for job in self.fired_jobs]

    def __getstate__(self) -> dict[str, T.Any]:
        # the submitted jobs live in the engine's manager; a stored sentinel keeps only their ids
        state = super().__getstate__()
        state["fired_jobs"] = []
        return state

    async def _fire(self, engine: "Engine") -> None:
        job = self.make_job()
        self.fired_jobs.append(job)
        logger.debug(f"sentinel {self.name} submits job {job.name} ({job.id})")
        await engine.submit_async(job)


async def _watch_placeholder() -> None:
    """Stands for the sentinel's work (see :meth:`SentinelJob.run_function`)."""


def _check_target(func: object, job_class: type[Job]) -> None:
    from .subprocess import SubprocessJob

    if issubclass(job_class, SubprocessJob):
        if not isinstance(func, str):
            raise TypeError(f"with job_type='subprocess' the target is a command string, got {func!r}")
    elif not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}: {func!r}")


def _check(condition: Condition, engine: "Engine") -> tuple[bool, bool]:
    """Evaluate the condition once: (its value, whether a schedule fired at this check)."""
    now = datetime.now()
    members = list(condition_members(condition))
    ticked = _tick_due(condition, now)
    periods = [m for m in members if isinstance(m, EveryPeriod)]
    before = [p.last_submitted_at for p in periods]
    with checked_at(now):
        value = bool(condition.satisfy(engine))
    # the engine's EveryPeriod restarts its period inside satisfy(): a restart is a tick
    ticked = ticked or any(p.last_submitted_at != b for p, b in zip(periods, before))
    # spent (or missed) fire times are skipped, not replayed at the next check
    consume_ticks(condition, now)
    return value, ticked


def _next_wake_delay(condition: Condition, poll_interval: float) -> T.Optional[float]:
    now = time.time()
    if _tick_due(condition, datetime.fromtimestamp(now)):
        # a fire time passed while the last fire was being submitted: check again at once
        return _MIN_PAUSE
    times = []
    when = condition.next_change(now)
    if when is not None:
        times.append(when)
    if condition.needs_polling():
        times.append(now + poll_interval)
    if not times:
        return None
    return max(min(times) - now, _MIN_PAUSE)


def _tick_due(condition: Condition, now: datetime) -> bool:
    return any(isinstance(m, ScheduleTick) and m.is_due(now) for m in condition_members(condition))
