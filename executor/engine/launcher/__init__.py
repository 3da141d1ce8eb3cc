"""Launchers: decorate a function to submit it as engine jobs (``@launcher``)."""

from __future__ import annotations

from .core import AsyncLauncher, LauncherBase, SyncLauncher, launcher
from .default import get_default_engine, set_default_engine

__all__ = ["launcher", "SyncLauncher", "AsyncLauncher", "LauncherBase",
           "get_default_engine", "set_default_engine"]
