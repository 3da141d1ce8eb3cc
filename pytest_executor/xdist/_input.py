"""What xdist's controller hands our side of each worker (``workerinput``)."""

from __future__ import annotations

from typing import Any, Final

import pytest

INPUT_KEY: Final = "pytest_executor"
"""Key of our entry in an xdist worker's ``workerinput``."""


def worker_input(config: pytest.Config) -> dict[str, Any]:
    """What xdist's controller handed this worker (``{}`` outside workers)."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    return workerinput
