"""Suites written for other pytest plugins run unchanged under pytest-executor.

One module per foreign plugin translates that plugin's markers and options into
our own ``job`` marker (and, for pytest-benchmark, onto ``job_benchmark``)
during collection, before the executor plans the run:

* :mod:`._dependency` — pytest-dependency's ``dependency(name=, depends=, scope=)``;
* :mod:`._order` — pytest-order's ``order(n | "first" | ..., before=, after=)``;
* :mod:`._rerun` — pytest-rerunfailures' ``flaky(reruns=)`` and ``--reruns``;
* :mod:`._timeout` — pytest-timeout's ``timeout(n)`` and ``--timeout``;
* :mod:`._benchmark` — pytest-benchmark's ``benchmark`` fixture, marker and options.

When the foreign plugin is absent we register its marker, fixture and common
options ourselves; when it is installed we never register what it registers,
and each module says which of the two acts (see the README, "Coming from other
plugins").  The hooks live in :mod:`._plugin`.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Final

import pytest

ORDER_ONLY_KEY: Final = pytest.StashKey[frozenset[str]]()
"""``item.stash[ORDER_ONLY_KEY]``: node ids in the item's ``after=`` that only order it.

pytest-order's markers say *when* a test runs, not that it needs the other
test to pass: the test waits for those tests to finish, but is not skipped when
one of them fails, is skipped or was not selected.
"""


def order_only(item: pytest.Item) -> frozenset[str]:
    """Node ids that ``item`` runs after without depending on their outcome."""
    return item.stash.get(ORDER_ONLY_KEY, frozenset())


@functools.lru_cache(maxsize=1)
def _entry_point_names() -> frozenset[str]:
    return frozenset(entry.name for entry in metadata.entry_points(group="pytest11"))


def foreign_plugin_loaded(pluginmanager: pytest.PytestPluginManager, name: str) -> bool:
    """True when the pytest plugin registered as ``name`` is (or is about to be) loaded.

    At ``pytest_addoption`` time an installed plugin may not be registered yet
    (entry points load in no fixed order), so an installed, not blocked
    (``-p no:NAME``) entry point counts as loaded too: we must never add an
    option it is going to add.
    """
    if pluginmanager.hasplugin(name):
        return True
    if pluginmanager.is_blocked(name):
        return False
    import os

    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return name in _entry_point_names()
