"""The plugin's per-config state, kept in ``config.stash[STATE_KEY]``.

Kept apart from :mod:`pytest_executor.plugin` so that the modules the plugin
loads (the xdist integration, the controller) can read it without importing
the entry point back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import pytest


@dataclass
class PluginState:
    """Per-config state of the plugin (``config.stash[STATE_KEY]``)."""

    settings: dict[str, Any]
    """Validated option values by short name (see :mod:`pytest_executor.config.options`)."""
    options_set: bool
    worker: bool
    deselected: list[pytest.Item] = field(default_factory=list)
    plan: Any = None
    """The :class:`pytest_executor.plan._planner.Plan` once the plugin is active."""
    notes: list[str] = field(default_factory=list)
    """Lines for the terminal under the "collected" line."""
    report_error: str | None = None
    """Why the JSON report could not be written at the end (one summary line)."""


STATE_KEY: Final = pytest.StashKey[PluginState]()
