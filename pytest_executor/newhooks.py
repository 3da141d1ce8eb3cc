"""Hooks that pytest-executor adds to pytest (registered via ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin, like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_executor.run.jobs import TestJob


@pytest.hookspec(firstresult=True)
def pytest_executor_select_backend(item: pytest.Item) -> str | None:
    """Choose the backend that runs ``item``; return ``None`` to let others decide.

    Called once per selected item, after collection, when the plugin is active.
    The first non-``None`` answer wins; the plugin's own (last) answer is the
    item's ``job(backend=...)`` marker argument, else ``--executor-backend``,
    else ``"local"``.  Returning a name that is not a backend is a usage error.

    Example, run every test of ``tests/slow/`` in subprocesses::

        def pytest_executor_select_backend(item):
            if "slow" in item.nodeid.split("/"):
                return "subprocess"
            return None
    """


@pytest.hookspec(firstresult=True)
def pytest_executor_dask_client(config: pytest.Config) -> Any | None:
    """Return the synchronous ``distributed.Client`` the ``dask`` backend runs on, or ``None``.

    Called once per run, when ``--executor-backend=dask`` starts; the first
    non-``None`` answer wins over ``--executor-dask-address``.  Use it for
    what an address alone cannot say: your own ``distributed.security.Security``,
    a dask-gateway or dask-kubernetes cluster.  The client stays yours: the
    plugin does not close it.  The suite is shipped to its workers as for an
    address (see "Running on a cluster" in the README).

    Example::

        @pytest.hookimpl(optionalhook=True)
        def pytest_executor_dask_client(config):
            from distributed import Client
            from distributed.security import Security

            security = Security(tls_ca_file="ca.pem", tls_client_cert="me.pem",
                                tls_client_key="me.key", require_encryption=True)
            return Client("tls://scheduler.example:8786", security=security)
    """


def pytest_executor_job_created(item: pytest.Item, job: TestJob) -> None:
    """``job``, the engine job of ``item``, was created (it is not submitted yet: ``job.status == "created"``).

    Called once per job after collection, in dependency order, before anything
    runs.  ``job`` is an :class:`executor.engine.job.base.Job` (a
    :class:`pytest_executor.run.jobs.TestJob`): besides the engine's
    attributes (``id``, ``status``, ``retries``, ``exclusive``, ``condition``...)
    it has ``nodeid``, ``backend``, and ``record`` (the job table's row:
    ``record.after``, ``record.timeout``...).
    """


def pytest_executor_job_finished(
    item: pytest.Item, job: TestJob, report: pytest.TestReport | None
) -> None:
    """``item``'s engine job has its final outcome (``job.outcome``: ``passed``, ``failed``...).

    ``job.status`` is the engine's (``done``; ``failed`` for a failed test;
    ``cancelled`` when the run stopped first), ``job.attempts`` the number of
    attempts, ``job.reports`` the reports of each attempt and ``job.worker``
    where the last one ran.  ``report`` is the item's most telling report of
    the final attempt (the failed one if any, else the call report, else setup)
    or ``None`` if nothing ran, e.g. when the run stopped first.
    """
