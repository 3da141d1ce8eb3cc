"""Factory of the parallel backends the controller can run items on.

The controller imports this module lazily (only when a parallel backend is
used) and calls :func:`make_runner`; the runners implement
:class:`pytest_executor._runner.Runner`.

This module is also a small pytest plugin (listed in ``pytest_plugins`` of
:mod:`pytest_executor.plugin`): when ``--executor-backend`` names a backend
with warm workers, :func:`pytest_sessionstart` starts that runner right away,
so the workers start up and collect while the controller collects;
:func:`make_runner` then hands out the runner already started (its ``start``
is idempotent).
"""

from __future__ import annotations

import os
from typing import Final

import pytest

from pytest_executor._protocol import ENV_WORKER
from pytest_executor._runner import Runner

BACKENDS: Final = ("process", "subprocess", "dask")
"""The backends :func:`make_runner` knows."""
_EARLY: Final = ("process", "dask")
"""Backends whose workers are worth starting before collection."""
_STARTED_EARLY = pytest.StashKey[dict[str, Runner]]()


def make_runner(backend: str, config: pytest.Config) -> Runner:
    """The runner of ``backend`` configured from ``config``'s options (started early, or new)."""
    early = config.stash.get(_STARTED_EARLY, {})
    if backend in early:
        return early.pop(backend)
    if backend == "process":
        from pytest_executor.process import ProcessRunner, read_workers_option

        return ProcessRunner(config, read_workers_option(config))
    if backend == "subprocess":
        from pytest_executor.process import read_workers_option
        from pytest_executor.subproc import SubprocessRunner

        return SubprocessRunner(config, read_workers_option(config))
    if backend == "dask":
        from pytest_executor.dask_runner import DaskRunner

        return DaskRunner(config)
    raise ValueError(f"unknown executor backend {backend!r}; expected one of {', '.join(BACKENDS)}")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the workers of ``--executor-backend=process|dask`` before collection."""
    config = session.config
    if os.environ.get(ENV_WORKER) or _runs_no_tests(config):
        return
    from pytest_executor.options import get_option

    backend = get_option(config, "backend")
    if backend not in _EARLY:
        return
    runner = make_runner(backend, config)
    runner.start(session)
    config.stash[_STARTED_EARLY] = {backend: runner}


def _runs_no_tests(config: pytest.Config) -> bool:
    option = config.option
    return bool(
        getattr(option, "collectonly", False)
        or getattr(option, "showfixtures", False)
        or getattr(option, "show_fixtures_per_test", False)
        or getattr(option, "setupplan", False)
    )
