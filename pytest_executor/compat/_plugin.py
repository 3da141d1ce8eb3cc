"""pytest hooks of the compatibility layer (loaded by :mod:`pytest_executor.plugin`).

For each foreign plugin: register its options (``pytest_addoption``) and
marker (``pytest_configure``) when it is not loaded, and translate its markers
into ``job`` markers first thing after collection, before ``-k``/``-m``
deselection (so ``after=`` edges may name deselected tests) and before the
executor decides whether it is active and plans the run.

PYTEST_DONT_REWRITE: one of the plugin's ``pytest_plugins``, imported before pytest starts in a
worker session (see :mod:`pytest_executor`).
"""

from __future__ import annotations

import os
from typing import Final, Protocol

import pytest

from ._common import marker_names
from . import _benchmark, _dependency, _order, _rerun, _timeout, foreign_plugin_loaded


class _Translator(Protocol):
    PLUGIN: str

    def add_options(self, parser: pytest.Parser) -> None: ...

    def configure(self, config: pytest.Config) -> None: ...

    def needed(self, config: pytest.Config, markers: frozenset[str]) -> bool: ...

    def translate(self, config: pytest.Config, items: list[pytest.Item]) -> None: ...


TRANSLATORS: Final[tuple[_Translator, ...]] = (_dependency, _order, _rerun, _timeout, _benchmark)
"""In this order: pytest-order must see the ``after=`` edges pytest-dependency added."""
ACT_BESIDE: Final = frozenset({_dependency.PLUGIN, _order.PLUGIN, _rerun.PLUGIN})
"""Plugins whose markers we translate even when they are installed (see each module)."""
NAMES_ELSEWHERE: Final = frozenset({_dependency.PLUGIN, _order.PLUGIN})
"""Translators that name other tests: not run where only one test is collected."""
_LOADED_KEY: Final = pytest.StashKey[frozenset[str]]()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Options of the foreign plugins that are not installed."""
    for translator in TRANSLATORS:
        if not foreign_plugin_loaded(pluginmanager, translator.PLUGIN):
            translator.add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Markers of the absent plugins; installed pytest-dependency hands over to us."""
    loaded = frozenset(t.PLUGIN for t in TRANSLATORS if config.pluginmanager.hasplugin(t.PLUGIN))
    config.stash[_LOADED_KEY] = loaded
    for translator in TRANSLATORS:
        if translator.PLUGIN not in loaded:
            translator.configure(config)
    if _dependency.PLUGIN in loaded:
        _dependency.take_over(config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Translate foreign markers into ``job`` markers on every collected test."""
    loaded = config.stash.get(_LOADED_KEY, frozenset())
    oneshot = os.environ.get("PYTEST_EXECUTOR_ONESHOT") == "1"
    markers = marker_names(items)
    for translator in TRANSLATORS:
        if translator.PLUGIN in loaded and translator.PLUGIN not in ACT_BESIDE:
            if translator is _benchmark:
                _benchmark.make_exclusive(config, items)
            continue
        if oneshot and translator.PLUGIN in NAMES_ELSEWHERE:
            continue  # a subprocess worker holds one test; the controller resolved its names
        if translator.needed(config, markers):
            translator.translate(config, items)
