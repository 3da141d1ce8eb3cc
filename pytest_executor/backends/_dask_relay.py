"""What a ``dask`` host task sends its controller: coalesced events, and the growth of the capture files.

:class:`Relay` sends a session's events through the dask worker's own stream
(:meth:`distributed.Worker.log_event` on the run's topic, see
:mod:`~pytest_executor.backends._dask_link`): no round trip, no blocking.
Events go as soon as there are some, but at most one per
:data:`BATCH_SECONDS` per session: a burst of small ones becomes one event.

:class:`CaptureFollower` follows the session's capture files while a test
runs: their growth is the test's output so far, which the controller keeps
so that a test whose whole dask worker is killed still shows it.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, final

BATCH_SECONDS = 0.02
"""At most one event per session per this many seconds: bursts are coalesced.

Each event costs the dask worker, the scheduler and the controller's client a
message (TLS included); for sub-millisecond tests 5 ms meant an event per few
tests.  20 ms cut a dask run of 2,000 trivial tests from 6.65 to 5.61 s and one
of 16 sessions from 6.3 to 5.5 s, while the sessions' prefetch
(``DaskRunner._depth``: 48 items of tiny tests) still covers the wait."""
_MAX_EVENT_BYTES = 1 << 20
"""Pending output beyond this goes at once, whatever :data:`BATCH_SECONDS` says."""


@final
class Relay:
    """Events to the controller: coalesced per :data:`BATCH_SECONDS`, sent through the worker's stream."""

    def __init__(self, worker: Any, topic: str, wid: str) -> None:
        self.worker = worker
        self.topic = topic
        self.wid = wid
        self.pending: list[list[Any]] = []
        self.size = 0
        self.last = 0.0

    def post(self, kind: str, **payload: Any) -> None:
        """Queue one event item (``flush`` sends it)."""
        self.pending.append([kind, payload])
        self.size += len(payload.get("data", b""))

    def due(self) -> float | None:
        """Seconds until pending items may go (0: now), ``None`` when nothing is pending."""
        if not self.pending:
            return None
        if self.size >= _MAX_EVENT_BYTES:
            return 0.0
        return max(0.0, self.last + BATCH_SECONDS - time.monotonic())

    def flush(self) -> None:
        """Send what is pending as one event."""
        if self.pending:
            items, self.pending, self.size = self.pending, [], 0
            self.worker.log_event(self.topic, {"w": self.wid, "ev": items})
            self.last = time.monotonic()


@final
class CaptureFollower:
    """Follows a session's capture files (Linux ``/proc``): what a running test wrote so far."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.sizes: list[int] = []

    def open(self, pid: int, fds: list[int]) -> None:
        """Open the session's stdout and stderr capture files (by its pid and their descriptors)."""
        for fd in fds[:2]:
            with contextlib.suppress(OSError):
                self.fds.append(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY))
                self.sizes.append(0)

    def poll(self, post: Callable[..., None]) -> None:
        """``post`` the growth of each capture file as a ``cap`` item; a shrunk file (the next phase) starts over."""
        for number, fd in enumerate(self.fds):
            try:
                size = os.fstat(fd).st_size
            except OSError:
                continue
            seen = self.sizes[number]
            if size == seen:
                continue
            if size < seen:
                seen = 0
            data = os.pread(fd, size - seen, seen)
            self.sizes[number] = size
            post("cap", stream=number, reset=seen == 0, data=data)

    def close(self) -> None:
        """Close the files."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


__all__ = ["BATCH_SECONDS", "CaptureFollower", "Relay"]
