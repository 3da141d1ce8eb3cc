"""Shared state of the demo suite: a tiny "service" the flow tests drive.

Its state lives in a JSON file in a directory shared by every process of the
run, so a dependent test sees what earlier tests did wherever each of them ran:
in the pytest process, on a warm worker process, in a fresh subprocess, on a
dask worker of this machine or on a pytest-xdist worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by every worker of this run.

    Worker sessions (pytest-executor's or pytest-xdist's) get their own base
    temporary directory inside the run's, so they share its parent.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_EXECUTOR_WORKER") or os.environ.get("PYTEST_XDIST_WORKER"):
        return base.parent
    return base


class Store:
    """A dict-like store persisted as one JSON file (each write replaces it atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._save({**self._load(), key: value})

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def clear(self) -> None:
        self._save({})


@pytest.fixture
def store(run_dir: Path) -> Iterator[Store]:
    """The store of the integration flow, shared by the whole run."""
    yield Store(run_dir / "demo-store.json")
