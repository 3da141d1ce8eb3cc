"""Shared state of the demo suite: a tiny in-memory "service" the flow tests drive.

The state lives in a module so that dependent tests see what earlier tests
did; under ``--executor-backend=process`` each worker has its own copy, so the
tests that share it are pinned to the ``local`` backend with ``job(backend=...)``.
"""

from __future__ import annotations

import pytest

STORE: dict[str, object] = {}


@pytest.fixture
def store() -> dict[str, object]:
    """The shared in-memory store of the integration flow."""
    return STORE
