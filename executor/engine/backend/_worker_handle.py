"""The engine's handle on one worker process of the pool (see :mod:`.process`)."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import typing as T


class RemoteTraceback(Exception):
    """Carries the worker-side traceback text of a job's exception (as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class Call:
    """One request sent to a worker whose reply is awaited (replies come back in the order of the requests)."""

    __slots__ = ("fut", "seq", "on_start", "started")

    def __init__(self, fut: "asyncio.Future[tuple]", seq: int | None = None,
                 on_start: T.Callable[[], None] | None = None, started: bool = True) -> None:
        self.fut = fut
        self.seq = seq  # a prefetched call's number: ("skip", seq) cancels it before it starts
        self.on_start = on_start  # run when the reply before it arrives: the worker starts it then
        self.started = started  # False while it waits in the worker behind another request


TAIL_BYTES = 64 * 1024
"""How much of a worker's output since its job started is kept for crash and timeout reports."""


class Worker:
    """One worker process and the socket to it (``pid`` is known once ``ready`` is done)."""

    def __init__(self, sock: socket.socket, ready: "asyncio.Future[None]", wid: int = 0) -> None:
        self.wid = wid  # stable for the worker's life, never reused by the pool
        self.sock = sock
        self.ready = ready
        self.pid = 0
        self.pidfd: int | None = None  # lets the engine wait for a process it did not fork
        self.reading = False
        self.calls: collections.deque[Call] = collections.deque()  # sent, reply awaited; the first one runs
        self.alive = True
        self.retiring = False  # retired (see StatefulPool.retire): not alive for calls, its process still ends
        self.known: set[int] = set()  # tokens of the functions this worker has cached
        self.states: set[str] = set()  # keys of the worker states it holds
        self.hosted: str | None = None  # key of the hosted state that owns its main stack
        self.infos: dict[str, T.Any] = {}  # what each hosted state's serve() sent
        self.affinity: T.Any = None  # the affinity key of the last job it ran
        self.outputs: dict[int, int] = {}  # read end of its stdout/stderr pipe -> the engine's fd it is copied to
        self.tail = bytearray()  # its output since its current job started (bounded)
        self.capture = False  # keep its output only (a state with capture_output=True), do not copy it
        self.listener: T.Callable[[int, bytes], None] | None = None
        """Called with each chunk of its output as read (1: stdout, 2: stderr): see ``ProcessPool(on_output=)``."""

    @property
    def busy(self) -> bool:
        """Whether a request sent to it is still unanswered (or waits in it, prefetched)."""
        return any(not call.fut.done() for call in self.calls)

    # ------------------------------------------------------------- output
    def open_outputs(self) -> tuple[int, int]:
        """Make its stdout and stderr pipes; return the write ends (for the zygote to hand to the worker)."""
        ends = []
        for target in (1, 2):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            self.outputs[read_end] = target
            ends.append(write_end)
        return ends[0], ends[1]

    def watch_outputs(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read its output on the event loop as it comes."""
        for fd in self.outputs:
            loop.add_reader(fd, self.read_output, fd, loop)

    def read_output(self, fd: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Take what pipe ``fd`` holds: keep the tail, copy it to the engine's own stdout/stderr unless captured."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if loop is not None:
                    loop.remove_reader(fd)
                return
            self.tail += data
            if len(self.tail) > TAIL_BYTES:
                del self.tail[: len(self.tail) - TAIL_BYTES]
            if self.listener is not None:
                self.listener(self.outputs[fd], data)
            if not self.capture:
                try:
                    os.write(self.outputs[fd], data)
                except OSError:
                    pass

    def close_outputs(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read what is left in its pipes, stop watching them and close them."""
        for fd in list(self.outputs):
            self.read_output(fd)
            try:
                loop.remove_reader(fd)
            except Exception:  # the loop is closed already
                pass
            os.close(fd)
        self.outputs.clear()

    def output_text(self) -> str:
        """Its output since its current job started (the last :data:`TAIL_BYTES`), decoded."""
        return self.tail.decode("utf-8", "replace")


def _unwrap(reply: tuple) -> T.Any:
    """Turn a worker reply into a value, or raise the job's exception with its remote traceback."""
    if reply[0] == "err":
        exc = reply[1]
        if reply[2]:
            exc.__cause__ = RemoteTraceback(reply[2])
        raise exc
    return reply[1]
