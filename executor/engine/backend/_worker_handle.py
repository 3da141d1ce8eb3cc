"""The engine's handle on one worker process of the pool (see :mod:`.process`)."""

from __future__ import annotations

import asyncio
import socket
import typing as T


class RemoteTraceback(Exception):
    """Carries the worker-side traceback text of a job's exception (as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class Worker:
    """One worker process and the socket to it (``pid`` is known once ``ready`` is done)."""

    def __init__(self, sock: socket.socket, ready: "asyncio.Future[None]", wid: int = 0) -> None:
        self.wid = wid  # stable for the worker's life, never reused by the pool
        self.sock = sock
        self.ready = ready
        self.pid = 0
        self.pidfd: int | None = None  # lets the engine wait for a process it did not fork
        self.reading = False
        self.waiter: asyncio.Future | None = None
        self.alive = True
        self.known: set[int] = set()  # tokens of the functions this worker has cached
        self.states: set[str] = set()  # keys of the worker states it holds
        self.hosted: str | None = None  # key of the hosted state that owns its main stack
        self.infos: dict[str, T.Any] = {}  # what each hosted state's serve() sent
        self.affinity: T.Any = None  # the affinity key of the last job it ran


def _unwrap(reply: tuple) -> T.Any:
    """Turn a worker reply into a value, or raise the job's exception with its remote traceback."""
    if reply[0] == "err":
        exc = reply[1]
        if reply[2]:
            exc.__cause__ = RemoteTraceback(reply[2])
        raise exc
    return reply[1]
