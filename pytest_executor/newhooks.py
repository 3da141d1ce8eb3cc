"""Hooks that pytest-executor adds to pytest (registered via ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin, like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_executor.views.report import JobRecord


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


def pytest_executor_job_created(item: pytest.Item, job: JobRecord) -> None:
    """``job`` (a :class:`pytest_executor.views.report.JobRecord`) was created for ``item``.

    Called once per job after collection, in dependency order, before anything
    runs; the record's ``backend``, ``after`` and ``retries`` are already set.
    """


def pytest_executor_job_finished(
    item: pytest.Item, job: JobRecord, report: pytest.TestReport | None
) -> None:
    """``item``'s job reached a final status (``job.status``).

    ``report`` is the item's most telling report of the final attempt (the failed
    one if any, else the call report, else setup) or ``None`` if nothing ran,
    e.g. when the run stopped first.
    """
