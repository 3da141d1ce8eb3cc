"""Unit tests of the pure ready-queue (pytest_executor.plan.scheduler)."""

from __future__ import annotations

import pytest

from pytest_executor.plan.scheduler import ReadyQueue


def test_dependencies_release_in_priority_order() -> None:
    queue = ReadyQueue([0, 1, 2, 3], {2: [0], 3: [0, 1]})
    assert queue.ready() == [0, 1]
    queue.start(0)
    queue.start(1)
    assert queue.ready() == []
    assert queue.finish(1) == []
    assert queue.finish(0) == [2, 3]
    assert queue.ready() == [2, 3]
    for node in (2, 3):
        queue.start(node)
        queue.finish(node)
    assert queue.is_done


def test_priority_follows_the_given_order_not_node_numbers() -> None:
    queue = ReadyQueue([2, 0, 1], {})
    assert queue.ready() == [2, 0, 1]
    assert queue.ready(limit=2) == [2, 0]


def test_max_running() -> None:
    queue = ReadyQueue([0, 1, 2], {}, max_running=2)
    assert queue.ready() == [0, 1]
    queue.start(0)
    assert queue.ready() == [1]
    queue.start(1)
    assert queue.ready() == [] and not queue.can_start(2)
    queue.finish(0)
    assert queue.can_start(2)


def test_exclusive_runs_alone_and_is_a_barrier() -> None:
    queue = ReadyQueue([0, 1, 2, 3], {}, exclusive={1})
    assert queue.ready() == [0]  # 1 must wait for an empty machine; 2, 3 wait behind it
    queue.start(0)
    assert queue.ready() == [] and not queue.can_start(2)
    queue.finish(0)
    assert queue.ready() == [1]
    queue.start(1)
    assert queue.ready() == [] and not queue.can_start(2)
    queue.finish(1)
    assert queue.ready() == [2, 3]


def test_dependencies_outside_the_queue_are_ignored() -> None:
    queue = ReadyQueue([0, 1], {1: [7]})
    assert queue.ready() == [0, 1]


def test_cancel_pending_and_misuse() -> None:
    queue = ReadyQueue([0, 1, 2], {1: [0]})
    queue.start(0)
    assert queue.cancel_pending() == [1, 2]
    assert not queue.is_done
    queue.finish(0)
    assert queue.is_done
    with pytest.raises(ValueError, match="not running"):
        queue.finish(0)
    with pytest.raises(ValueError, match="not ready"):
        ReadyQueue([0, 1], {1: [0]}).start(1)
    with pytest.raises(ValueError, match="max_running"):
        ReadyQueue([0], {}, max_running=0)
