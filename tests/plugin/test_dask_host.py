"""The dask backend's host task: the wait of its thread for the controller's items always ends with the host."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_executor.backends._dask_host import _receive, _wake_receiver

from tests.plugin._processes import wait_for

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

    def wait_on_the_queue() -> None:
        with contextlib.suppress(Exception):  # its client closes under it
            distributed.Queue(name, client=stale).get()

    waiting = threading.Thread(target=wait_on_the_queue, daemon=True)
    waiting.start()
    wait_for(lambda: client.run_on_scheduler(_getters(name)) >= 1, "the stale get to reach the scheduler", 30)
    stale.close()
    waiting.join(30)
    assert client.run_on_scheduler(_getters(name)) == 1, "the scheduler dropped the gone client's get"


def test_a_rerun_host_wakes_its_thread_though_a_stale_get_takes_its_end(dask_address: str, client: Any) -> None:
    # dask re-runs the host task of a dead worker: the dead run's get, still served by the
    # scheduler, takes the first 'end' the new run's host puts. The thread must still stop
    # waiting (it held its dask worker's only thread, and the sessions queued behind it, for good).
    name = f"host-test-{time.monotonic_ns()}"
    queue = distributed.Queue(name, client=client)
    _leave_a_stale_get(dask_address, name, client)
    taken: list[list[Any]] = []
    released = threading.Event()

    def receive() -> None:
        _receive(queue, taken.extend)
        released.set()

    receiving = threading.Thread(target=receive, daemon=True)
    receiving.start()
    _wake_receiver(queue, released)  # as the host does when it ends
    receiving.join(30)
    assert not receiving.is_alive(), "the host task's thread still waits for the controller's items"
    assert [list(item) for item in taken] == [["end"]]  # the second: the stale get took the first
