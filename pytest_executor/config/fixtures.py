"""Engine fixtures: ``engine``, ``session_engine``, ``async_engine``, ``engine_setting``.

All three engines take their :class:`~executor.engine.EngineSetting` from the
``engine_setting`` fixture; override it (at session scope, so that
``session_engine`` can use it too) to configure them::

    @pytest.fixture(scope="session")
    def engine_setting():
        return EngineSetting(max_jobs=4, print_traceback=False)

Each engine keeps its cache under a temporary directory (``tmp_path`` for the
per-test ones) unless the setting names a ``cache_path``.  Jobs still pending
or running when a test ends are cancelled, and listed in an "executor" section
of the test's report (shown with the test's output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from executor.engine import Engine, EngineSetting


@pytest.fixture(scope="session")
def engine_setting() -> EngineSetting:
    """The setting of the ``engine``, ``session_engine`` and ``async_engine`` fixtures."""
    from executor.engine import EngineSetting

    return EngineSetting()


def _setting_for(setting: EngineSetting, cache_dir: Path) -> EngineSetting:
    """``setting`` with its cache under ``cache_dir`` unless it names one itself."""
    if getattr(setting, "cache_path", None):
        return setting
    return dataclasses.replace(setting, cache_path=str(cache_dir / "executor-cache"))


def _unfinished(engine: Engine) -> list[Any]:
    """Jobs of ``engine`` that are still pending or running."""
    jobs = engine.jobs
    return [job for view in (jobs.pending, jobs.running) for job in list(view.values())]


def _describe(jobs: list[Any]) -> str:
    if not jobs:
        return ""
    lines = [f"{len(jobs)} job(s) still pending or running at teardown were cancelled:"]
    lines += [f"  {getattr(job, 'name', '')} id={job.id} status={job.status}" for job in jobs]
    return "\n".join(lines)


def _report_leftovers(request: pytest.FixtureRequest, description: str) -> None:
    if description and isinstance(request.node, pytest.Item):
        request.node.add_report_section("teardown", "executor", description)


@pytest.fixture
def engine(
    engine_setting: EngineSetting, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """A started :class:`~executor.engine.Engine` for one test; stopped afterwards."""
    from executor.engine import Engine

    instance = Engine(setting=_setting_for(engine_setting, tmp_path))
    instance.start()
    try:
        yield instance
    finally:
        leftovers = _unfinished(instance)
        description = _describe(leftovers)  # before cancelling: show what they were doing
        try:
            if leftovers:
                instance.cancel_all()
        finally:
            instance.stop()
        _report_leftovers(request, description)


@pytest.fixture(scope="session")
def session_engine(
    engine_setting: EngineSetting, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A started :class:`~executor.engine.Engine` shared by the whole session."""
    from executor.engine import Engine

    instance = Engine(setting=_setting_for(engine_setting, tmp_path_factory.mktemp("engine")))
    instance.start()
    try:
        yield instance
    finally:
        try:
            instance.cancel_all()
        finally:
            instance.stop()


@pytest.fixture
def async_engine(
    engine_setting: EngineSetting, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    """An :class:`~executor.engine.Engine` for ``async def`` tests (no loop thread).

    Use it with ``await async_engine.submit_async(...)`` / ``await
    async_engine.join()``: it schedules jobs on the test's own event loop, so
    it works under pytest-asyncio and anyio alike (it is a plain fixture).
    Jobs left running are cancelled when that loop ends, and listed in the
    test's report (together with jobs the test cancelled itself: the two cannot
    be told apart once the loop is gone).
    """
    from executor.engine import Engine

    instance = Engine(setting=_setting_for(engine_setting, tmp_path))
    try:
        yield instance
    finally:
        leftovers = _unfinished(instance)
        description = _describe(leftovers)
        for job in leftovers:
            _cancel_quietly(job)
        ended_with_loop = list(instance.jobs.cancelled.values())
        if ended_with_loop and not leftovers:
            description = _describe(ended_with_loop).replace(
                "still pending or running at teardown were cancelled",
                "ended cancelled (left running when the event loop closed, or cancelled by the test)",
            )
        _report_leftovers(request, description)


def _cancel_quietly(job: Any) -> None:
    """Cancel a job whose event loop may be gone already."""
    try:
        job.engine.cancel(job)
    except RuntimeError:  # its loop is closed: nothing runs it any more
        pass

