"""Factory of the parallel backends the controller can run items on.

The controller imports this module lazily (only when a parallel backend is
used) and calls :func:`make_runner`; the runners implement
:class:`pytest_executor.backends._runner.Runner`.

This module is also a small pytest plugin (listed in ``pytest_plugins`` of
:mod:`pytest_executor.plugin`): when ``--executor-backend`` names a backend
with warm workers, :func:`pytest_sessionstart` starts that runner right away,
so the workers start up and collect while the controller collects (``process``
workers are even forked at :func:`pytest_load_initial_conftests`, imports done;
as many as the cores the controller's own collection leaves free, the others
once it has collected);
:func:`make_runner` then hands out the runner already started (its ``start``
is idempotent).

PYTEST_DONT_REWRITE: one of the plugin's ``pytest_plugins``, imported before pytest starts in a
worker session (see :mod:`pytest_executor`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import pytest

from pytest_executor.backends._protocol import ENV_WORKER
from pytest_executor.config._parse import usable_cpu_count
from pytest_executor.backends._runner import Runner

if TYPE_CHECKING:
    from pytest_executor.backends.forked import ForkedRunner

BACKENDS: Final = ("process", "forked", "subprocess", "dask")
"""The backends :func:`make_runner` knows."""
_EARLY: Final = ("process", "forked", "dask")
"""Backends whose workers are worth starting before collection."""
_STARTED_EARLY = pytest.StashKey[dict[str, Runner]]()


def read_workers_option(config: pytest.Config, get: Callable[[pytest.Config, str], Any] | None = None) -> int:
    """``--executor-workers N|auto`` (default: the core count), capped by ``--executor-max-jobs``.

    Values are read (and validated, with an error naming the option) through
    :mod:`pytest_executor.config.options`, which owns them, or through ``get``.
    """
    from pytest_executor.config.options import check_workers_cap, get_option

    get = get or get_option
    count = get(config, "workers") or usable_cpu_count()
    check_workers_cap(int(count), get(config, "workers-max"))  # before a single fork
    max_jobs = get(config, "max-jobs")
    return max(1, min(int(count), int(max_jobs)) if max_jobs else int(count))




def make_runner(backend: str, config: pytest.Config) -> Runner:
    """The runner of ``backend`` configured from ``config``'s options (started early, or new)."""
    early = config.stash.get(_STARTED_EARLY, {})
    if backend in early:
        return early.pop(backend)
    if backend == "process":
        from pytest_executor.backends.process import ProcessRunner

        return ProcessRunner(config, read_workers_option(config))
    if backend == "forked":
        from pytest_executor.backends.forked import ForkedRunner

        return ForkedRunner(config, read_workers_option(config))
    if backend == "subprocess":
        from pytest_executor.backends.subproc import SubprocessRunner

        return SubprocessRunner(config, read_workers_option(config))
    if backend == "dask":
        from pytest_executor.backends.dask import DaskRunner

        return DaskRunner(config)
    raise ValueError(f"unknown executor backend {backend!r}; expected one of {', '.join(BACKENDS)}")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Fork the ``process`` (and ``forked``) workers as early as possible, where the platform allows.

    At this point the controller has imported pytest and every plugin and
    parsed the command line, but loaded no conftest and configured nothing: a
    fork goes on to load the conftests and collect at once, where a fresh
    interpreter would first spend about a second importing the same.  A
    forked child leaves this hook as a worker session.

    What differs from a freshly started worker: plugins loaded by entry point
    or ``-p`` were imported by the controller, so code they ran at import time
    saw the controller's pid and environment (without ``PYTEST_EXECUTOR_WORKER``).
    Conftests are imported by each worker, as before.
    """
    config = early_config
    if not _may_fork(config):
        return
    try:
        workers = read_workers_option(config, _early_option)
        backend = str(_early_option(config, "backend"))
    except Exception:  # a bad option: pytest_configure reports it clearly
        return
    from pytest_executor.backends.process import ProcessRunner

    runner: ProcessRunner | ForkedRunner
    if backend == "forked":
        from pytest_executor.backends.forked import ForkedRunner

        runner = ForkedRunner(config, workers)
    else:
        runner = ProcessRunner(config, workers)
    if runner.prefork():
        return  # the child: a worker from here on (ENV_WORKER is set)
    started: dict[str, Runner] = {backend: runner}
    config.stash[_STARTED_EARLY] = started


def _early_option(config: pytest.Config, name: str) -> Any:
    """An option before pytest parsed the command line for good (``known_args_namespace``)."""
    from pytest_executor.config.options import find_option, read_ini

    option = find_option(name)
    raw = getattr(config.known_args_namespace, option.ini, None)
    if raw is None:
        raw = read_ini(config, option.ini)
    if raw is None or isinstance(raw, bool):
        return option.default if raw is None else raw
    return option.parse(str(raw))


def _may_fork(config: pytest.Config) -> bool:
    if os.environ.get(ENV_WORKER) or not hasattr(os, "fork"):
        return False
    known = config.known_args_namespace
    quick = ("help", "version", "markers", "cacheshow", "collectonly", "showfixtures", "show_fixtures_per_test", "setupplan")
    if any(getattr(known, name, False) for name in quick):
        return False
    # Forking a process with threads may copy a lock some thread holds.
    if threading.active_count() != 1:
        return False
    try:
        return _early_option(config, "backend") in ("process", "forked")
    except Exception:  # a bad option: pytest_configure reports it clearly
        return False


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the workers of ``--executor-backend=process|forked|dask`` before collection."""
    config = session.config
    if os.environ.get(ENV_WORKER) or _runs_no_tests(config):
        return
    forked = config.stash.get(_STARTED_EARLY, {})
    if forked:
        for runner in forked.values():
            runner.start(session)
        return
    from pytest_executor.config.options import get_option

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
