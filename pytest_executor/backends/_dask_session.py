"""The controller's view of one ``dask`` session: a ``Popen`` look-alike and its worker record.

A session's process runs on a dask worker; the controller knows it only
through its host task's events (see :mod:`~pytest_executor.backends._dask_link`).
:class:`RemoteProcess` answers ``poll``/``wait`` from those events and sends
``kill``/``abort``/``stop`` to the host; :class:`RemoteWorker` sends protocol
messages through the session's queue and keeps the capture output forwarded
so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, final

from pytest_executor.backends._protocol import encode
from pytest_executor.backends._pipe_worker import WorkerProcess


class SessionOwner(Protocol):
    """What a :class:`RemoteProcess` needs from its runner."""

    def _wait_session(self, remote: RemoteProcess, timeout: float | None) -> int:
        """Block until the session's exit is known (or ``timeout``)."""

    def _to_host(self, wid: str, item: list[Any]) -> None:
        """Send ``item`` to the session's host task."""


@final
class RemoteProcess:
    """The controller's view of a session hosted on a dask worker (a ``Popen`` look-alike)."""

    def __init__(self, runner: SessionOwner, wid: str) -> None:
        self.runner = runner
        self.wid = wid
        self.pid = -1
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the host reported it (or the session was lost)."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the host reports the exit (or ``timeout``)."""
        return self.runner._wait_session(self, timeout)

    def send(self, name: str) -> None:
        """Ask the host to ``kill``, ``abort`` or ``stop`` the session."""
        self.runner._to_host(self.wid, [name])


@dataclass(eq=False)
class RemoteWorker(WorkerProcess):
    """A session on a dask worker: messages go through its queue, captures come as events."""

    link: Any = None
    address: str | None = None
    """The dask worker hosting it, once its host task started."""
    captured: list[str] = field(default_factory=lambda: ["", ""])
    reported: set[str] = field(default_factory=set)
    """Node ids of the queued items that already had a report replayed."""

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one protocol message to the session (through its queue)."""
        if self.link is not None and not self.exited:
            self.link.send(self.wid, ["frame", encode(name, kwargs)])

    def read_capture(self) -> tuple[str, str]:
        """What the running test wrote to its captured stdout/stderr, as forwarded so far."""
        return self.captured[0], self.captured[1]



__all__ = ["RemoteProcess", "RemoteWorker", "SessionOwner"]
