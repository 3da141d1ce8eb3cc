"""The dask backend's link: every event a session publishes wakes the controller, none is left waiting."""

from __future__ import annotations

import selectors
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_executor.backends._dask_link import DaskLink

distributed = pytest.importorskip("distributed")

_EVENTS = 1500


def _publish(topic: str, wid: str, count: int) -> int:
    """A task: publish ``count`` one-event messages from the worker, paced as a session's host sends them."""
    worker = distributed.get_worker()
    for index in range(count):
        worker.log_event(topic, {"w": wid, "ev": [("n", {"i": index})]})
        time.sleep(0.001)  # pacing, not synchronisation: a burst would wake the controller only once
    return count


def _handle_results_for(seconds: float) -> None:
    """Hold the GIL for ``seconds``, as the controller does while it handles results."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def client(dask_address: str) -> Iterator[Any]:
    """A client of the session's LocalCluster."""
    with distributed.Client(dask_address, set_as_default=False) as client:
        yield client


def test_a_stream_of_events_never_loses_a_wake_up(client: Any) -> None:
    """The controller waits only on the wake-up pipe: each wait must end while news is pending.

    The events arrive on the client's loop thread while the controller takes
    the wake-ups on its own; a wake-up lost between the two (the pipe drained
    after the flag was cleared) left the controller asleep until its next
    timed wake-up, about a second, several times per 2,000 tests.
    """
    link = DaskLink(client, f"link-test-{time.monotonic_ns()}")
    link.open_session("w0")
    try:
        future = client.submit(_publish, link.topic, "w0", _EVENTS, pure=False)
        seen: list[int] = []
        stalls = 0
        selector = selectors.DefaultSelector()
        selector.register(link.wake_fd, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while len(seen) < _EVENTS and time.monotonic() < deadline:
            # news pending and no wake-up byte for a quarter second, twice: lost (the publisher never pauses)
            if not selector.select(0.25) and link.news and not selector.select(0.25):
                stalls += 1
            link.take_wake()
            _handle_results_for(0.001)  # the loop thread queues for the GIL meanwhile, as in a real run
            while link.news:
                inbox = link.inbox[link.news.popleft()]
                while inbox:
                    seen.append(inbox.popleft()[1]["i"])
        selector.close()
        assert future.result(timeout=30) == _EVENTS
        assert stalls == 0, f"{stalls} waits timed out with news pending"
        assert seen == list(range(_EVENTS))
    finally:
        link.close()


def _take_items(name: str, count: int) -> list[Any]:
    """A task: what a session's host does with its queue (make it, read ``count`` items in batches, release it)."""
    queue = distributed.Queue(name, client=distributed.get_client())
    items: list[Any] = []
    try:
        while len(items) < count:
            items.extend(queue.get(timeout=30))
        return items
    finally:
        queue.close()


def _scheduler_queues(dask_scheduler: Any) -> list[str]:
    return list(dask_scheduler.extensions["queues"].queues)


def test_session_queues_are_made_by_their_pumps_in_order_and_released(client: Any) -> None:
    """Opening a session makes no blocking round trip; its first send makes the queue; close leaves none.

    Sixteen sessions opened one after another used to wait for the scheduler
    once each (a second and a half at the start of a 16-worker run, while the
    scheduler's loop was busiest); a queue made twice would never be released.
    """
    link = DaskLink(client, f"link-test-{time.monotonic_ns()}")
    try:
        names = [link.open_session(f"w{number}") for number in range(3)]
        assert not set(names) & set(client.run_on_scheduler(_scheduler_queues))
        for number in range(3):
            for index in range(5):
                link.send(f"w{number}", ["run", [number, index]])
        futures = [client.submit(_take_items, name, 5, pure=False) for name in names]
        # (msgpack carries the lists as tuples)
        assert client.gather(futures) == [[("run", (number, index)) for index in range(5)] for number in range(3)]
    finally:
        link.close()
    deadline = time.monotonic() + 10
    while set(names) & set(client.run_on_scheduler(_scheduler_queues)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the release goes on the client's stream: poll for it, with a deadline
    assert not set(names) & set(client.run_on_scheduler(_scheduler_queues))
