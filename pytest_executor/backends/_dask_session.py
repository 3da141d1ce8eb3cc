"""The controller's record of one ``dask`` session: the items handed to it and what its host said.

A session runs on a dask worker, as the hosted state of its host task's
engine pool (:mod:`~pytest_executor.backends._dask_host`); the controller
knows it only through the host's events (see
:mod:`~pytest_executor.backends._dask_link`) and reaches it only through its
queue.  :class:`RemoteWorker` keeps the items handed to it (:class:`Slot`),
its collection, its own output so far and the capture output forwarded for the
test it runs.
"""

from __future__ import annotations

import codecs
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pytest_executor.backends._failed_item import trim_stack_dump
from pytest_executor.backends._runner import ItemTask

_TAIL_BYTES = 64 * 1024
"""How much of a session's own output is kept for crash and timeout reports."""


@dataclass
class Slot:
    """A task handed to a session, from ``run`` until ``done``."""

    task: ItemTask
    started: bool = False
    result: bool = False
    start: float = 0.0
    announced: bool = False
    """Its ``logstart`` was replayed when the host said it started (the session's own is not replayed again)."""


@dataclass(eq=False)
class RemoteWorker:
    """A pytest session on a dask worker, as its controller sees it."""

    wid: str
    link: Any = None
    """The run's :class:`~pytest_executor.backends._dask_link.DaskLink` (None: a stand-in for failing tasks)."""
    address: str | None = None
    """The dask worker hosting it, once its host task started."""
    returncode: int | None = None
    """How it ended (negative: a signal), once known."""
    tail: bytearray = field(default_factory=bytearray)
    slots: deque[Slot] = field(default_factory=deque)
    collected: dict[str, Any] | None = None
    ready: bool = False
    closing: bool = False
    exited: bool = False
    index_map: list[int] | None = None
    last_module: str | None = None
    timed_out: float | None = None
    crashed_index: int | None = None
    """The item whose call the session died in (its host says so); None: it died between items or while ending."""
    fatal: str | None = None
    lost: bool = False
    """Its dask worker died: what its host had not relayed yet was lost with it."""
    bye: bool = False
    """The session finished its run loop; only its end is left."""
    captured: list[str] = field(default_factory=lambda: ["", ""])
    reported: set[str] = field(default_factory=set)
    """Node ids of the queued items that already had a report replayed."""
    out_decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    """Decodes the session's own output for echoing under ``-s``."""
    load: int = 0
    """Tasks sent whose outcome is not known yet (kept by :meth:`assign`/:meth:`resolve`/:meth:`drop`)."""

    def assign(self, task: ItemTask) -> None:
        """Note that ``task`` was handed to this session."""
        self.slots.append(Slot(task))
        self.load += 1

    def resolve(self, slot: Slot) -> None:
        """The outcome of ``slot`` is known (its teardown may still be pending)."""
        if not slot.result:
            slot.result = True
            self.load -= 1

    def drop(self, slot: Slot) -> None:
        """``slot`` is finished (or lost): forget it."""
        self.resolve(slot)
        self.slots.remove(slot)

    def send(self, item: list[Any]) -> None:
        """Send one item to the session's host (``["run", tasks]``, ``["shutdown"]``, ``["stop"]``)."""
        if self.link is not None and not self.exited:
            self.link.send(self.wid, item)

    def take_output(self, data: bytes) -> None:
        """Keep the tail of the session's own output."""
        self.tail += data
        if len(self.tail) > _TAIL_BYTES:
            del self.tail[: len(self.tail) - _TAIL_BYTES]

    def read_capture(self) -> tuple[str, str]:
        """What the running test wrote to its captured stdout/stderr, as forwarded so far."""
        return self.captured[0], self.captured[1]

    def tail_text(self, lines: int = 60) -> str:
        """The last ``lines`` lines the session wrote to its own stdout/stderr, stack dumps trimmed."""
        text = bytes(self.tail).decode("utf-8", "replace")
        return "\n".join(trim_stack_dump(text.rstrip("\n").splitlines())[-lines:])


__all__ = ["RemoteWorker", "Slot"]
