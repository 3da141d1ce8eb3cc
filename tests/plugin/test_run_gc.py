"""The controller pauses the cyclic garbage collector only while it builds what lives as long as the run."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pytest_executor.run._gc import collector_paused


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Restore the collector's state, whatever a test did to it."""
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_state")
def test_the_collector_is_off_inside_and_back_on_after() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_state")
def test_the_collector_is_back_on_after_an_error() -> None:
    gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("planning failed")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_state")
def test_a_collector_switched_off_by_the_user_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
