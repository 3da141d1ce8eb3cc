"""The dask backend's host task: its wait for the controller's items always ends once the host has."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_executor.backends._dask_host import _receive

distributed = pytest.importorskip("distributed")


@pytest.fixture
def client(dask_address: str) -> Iterator[Any]:
    """A client of the session's LocalCluster."""
    with distributed.Client(dask_address, set_as_default=False) as client:
        yield client


def _getters(name: str) -> Any:
    """A scheduler-side count of the ``get`` calls waiting on queue ``name``."""
    def count(dask_scheduler: Any) -> int:
        return len(dask_scheduler.extensions["queues"].queues[name]._getters)
    return count


def _leave_a_stale_get(address: str, name: str, client: Any) -> None:
    """A ``get`` on queue ``name`` from a client that then goes away, as a killed dask worker's does."""
    stale = distributed.Client(address, set_as_default=False)
    waiting = threading.Thread(target=lambda: _swallow(distributed.Queue(name, client=stale).get), daemon=True)
    waiting.start()
    deadline = time.monotonic() + 30
    while client.run_on_scheduler(_getters(name)) < 1:
        assert time.monotonic() < deadline, "the stale get never reached the scheduler"
        time.sleep(0.05)
    stale.close()
    waiting.join(30)


def _swallow(call: Any) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - its client closes under it
        pass


def test_a_rerun_host_whose_end_is_taken_by_a_stale_get_still_stops_waiting(dask_address: str, client: Any) -> None:
    # dask re-runs the host task of a dead worker: the dead run's get, still served by the
    # scheduler, takes the 'end' the new run's host puts. Its wait must still end (it held its
    # dask worker's only thread, and the sessions queued behind it, for good).
    name = f"host-test-{time.monotonic_ns()}"
    queue = distributed.Queue(name, client=client)
    _leave_a_stale_get(dask_address, name, client)
    taken: list[list[Any]] = []
    ended = threading.Event()
    receiving = threading.Thread(target=_receive, args=(queue, taken.extend, ended.is_set), daemon=True)
    receiving.start()
    queue.put([["end"]])  # what the host puts as it ends
    ended.set()
    receiving.join(30)
    assert not receiving.is_alive(), "the host task still waits for the controller's items"
    assert taken == [], "the stale get did not take the end: this run did not test the case"
