"""The controller's side of a pipe-connected worker session (the ``dask`` backend's remote sessions derive from it).

:class:`WorkerProcess` is one worker process and the controller's ends of
its pipes (its channel, its own output, a lifeline); the functions build a
worker's command line from the controller's and describe how a worker ended.
The pool that drives such workers is :class:`pytest_executor.backends._pipe_pool.WorkerPool`.
"""

from __future__ import annotations

import codecs
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from executor._kill import kill_tree

from pytest_executor.backends._failed_item import read_capture_files, trim_stack_dump
from pytest_executor.backends._protocol import FrameDecoder, encode, write_all
from pytest_executor.backends._runner import ItemTask

@dataclass
class Slot:
    """A task assigned to a worker, from ``run`` until ``done``."""

    task: ItemTask
    started: bool = False
    result: bool = False
    start: float = 0.0


@dataclass
class WorkerProcess:
    """One worker process and the controller's ends of its pipes."""

    wid: str
    proc: Any
    """A ``subprocess.Popen`` (or a look-alike for remote workers: pid, returncode, poll, wait)."""
    write_fd: int
    read_fd: int
    out_fd: int
    lifeline_fd: int
    pidfd: int | None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    tail: bytearray = field(default_factory=bytearray)
    slots: deque[Slot] = field(default_factory=deque)
    collected: dict[str, Any] | None = None
    ready: bool = False
    closing: bool = False
    exited: bool = False
    channel_open: bool = True
    index_map: list[int] | None = None
    capture_fds: list[int] = field(default_factory=list)
    deadline: float | None = None
    last_module: str | None = None
    timed_out: float | None = None
    fatal: str | None = None
    bye: bool = False
    """The worker finished its run loop; only its session's exit is left."""

    out_decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    """Decodes the worker's own output for echoing (see ``WorkerPool._take_output``)."""

    load: int = 0
    """Tasks sent whose outcome is not known yet (kept by :meth:`assign`/:meth:`resolve`/:meth:`drop`)."""

    def assign(self, task: ItemTask) -> None:
        """Note that ``task`` was handed to this worker."""
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

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one message; a dead worker is noticed by its pidfd/EOF, not here."""
        if self.write_fd < 0:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            write_all(self.write_fd, encode(name, kwargs))

    def read_capture(self) -> tuple[str, str]:
        """What the running test wrote to its captured stdout/stderr so far."""
        return read_capture_files(self.capture_fds)

    def tail_text(self, lines: int = 60) -> str:
        """The last ``lines`` lines the worker wrote to its own stdout/stderr, stack dumps trimmed."""
        text = bytes(self.tail).decode("utf-8", "replace")
        return "\n".join(trim_stack_dump(text.rstrip("\n").splitlines())[-lines:])


def kill_process_tree(pid: int) -> None:
    """SIGKILL a worker, its process group and every descendant (see :mod:`executor._kill`)."""
    kill_tree(pid)


Batches = dict[str, tuple[WorkerProcess, list[tuple[int, int, str, float | None]]]]
"""Tasks handed out in one dispatch round, by worker id: ``(index, windex, nodeid, timeout)`` each."""

