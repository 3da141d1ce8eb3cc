"""A few slow, independent tests (they overlap on a parallel backend), and a timed one."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from executor.engine.job.condition import AfterTimepoint

NOT_BEFORE = datetime.now() + timedelta(seconds=0.5)
"""The timed test waits until half a second after this module was imported.

Each worker process imports the module (and computes this) on its own, so the
timed test runs in the pytest process, where its condition is evaluated too."""


@pytest.mark.parametrize("part", range(4))
def test_slow_part(part: int) -> None:
    time.sleep(0.25)
    assert part >= 0


@pytest.mark.job(backend="local", condition=AfterTimepoint(timepoint=NOT_BEFORE))
def test_runs_after_a_timepoint() -> None:
    assert datetime.now() >= NOT_BEFORE


@pytest.mark.job(retries=2, timeout=10)
def test_with_retries_and_timeout() -> None:
    assert sum(range(10)) == 45
