"""The wire between the xdist controller and our worker side: graph files and the socket link.

* :class:`Graph` — a worker's resolved plan as node indices, written as JSON
  into the rendezvous directory before xdist reports the worker's collection;
* :func:`connect` / :class:`Rendezvous` — a local stream socket (Unix socket,
  else loopback TCP) carrying framed messages (:mod:`pytest_executor._protocol`):
  the worker's ``hello`` (with the run's random token), then from the
  controller ``tickets`` (``items``: ``[(index, wait), ...]``) and ``done``
  (``index``, ``outcome``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, final

from pytest_executor._protocol import ChannelClosed, FdChannel

_CONNECT_TIMEOUT = 60.0  # seconds for a worker's hello to reach the controller

#: Report attribute with the attempts of a test that were retried on a worker, as
#: ``[status, duration, message]`` lists; plain data, so xdist ships it with the report.
RETRIED_ATTRIBUTE = "executor_retried_attempts"


@final
@dataclass
class Graph:
    """The resolved plan of one worker's collection, as node indices (JSON-friendly)."""

    deps: dict[int, list[int]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    exclusive: list[int] = field(default_factory=list)
    missing: dict[int, list[str]] = field(default_factory=dict)
    retries: dict[int, int] = field(default_factory=dict)
    timeouts: dict[int, float] = field(default_factory=dict)
    error: str | None = None
    """The usage error planning raised (cycle, unknown name, bad marker), if any."""

    @property
    def needs_dispatch(self) -> bool:
        """Whether the dependency-aware scheduler must take over from xdist's."""
        return bool(self.deps or self.exclusive)

    def dump(self, path: str) -> None:
        """Write atomically: the controller never sees half a file."""
        data = {
            "deps": self.deps, "order": self.order, "exclusive": self.exclusive,
            "missing": self.missing, "retries": self.retries, "timeouts": self.timeouts,
            "error": self.error,
        }
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str) -> Graph:
        """Read a graph written by :meth:`dump`."""
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)

        def keyed(mapping: dict[str, Any]) -> dict[int, Any]:
            return {int(key): value for key, value in mapping.items()}

        return cls(
            deps=keyed(data["deps"]), order=list(data["order"]), exclusive=list(data["exclusive"]),
            missing=keyed(data["missing"]), retries=keyed(data["retries"]),
            timeouts=keyed(data["timeouts"]), error=data["error"],
        )


def graph_path(directory: str, worker_id: str) -> str:
    """Where worker ``worker_id`` writes its graph."""
    return os.path.join(directory, f"{worker_id}.graph.json")


def connect(address: str) -> FdChannel:
    """Open the worker end of the link (``unix:PATH`` or ``tcp:HOST:PORT``)."""
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    fd = sock.detach()
    return FdChannel(fd, fd)


@final
class Rendezvous:
    """The controller's end: a private directory for graphs and a listening socket."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pytest-executor-xdist-")
        self.token = secrets.token_hex(16)
        path = os.path.join(self.directory, "link")
        if hasattr(socket, "AF_UNIX") and len(path) < 100:
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(path)
            self.address = f"unix:{path}"
        else:
            self.server = socket.create_server(("127.0.0.1", 0))
            self.address = f"tcp:127.0.0.1:{self.server.getsockname()[1]}"
        self.server.listen(64)
        self.links: dict[str, FdChannel] = {}

    def link(self, worker_id: str) -> FdChannel:
        """The channel of ``worker_id``; accept connections until its hello arrived."""
        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while worker_id not in self.links:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"pytest-executor: xdist worker {worker_id} never connected")
            self.server.settimeout(left)
            try:
                sock, _ = self.server.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            channel = FdChannel(sock.fileno(), sock.fileno())
            sock.detach()
            try:
                name, data = channel.recv(timeout=left)
            except (ChannelClosed, TimeoutError):
                channel.close()
                continue
            if name != "hello" or data.get("token") != self.token:
                channel.close()  # not one of our workers
                continue
            old = self.links.pop(data["worker"], None)
            if old is not None:
                old.close()
            self.links[data["worker"]] = channel
        return self.links[worker_id]

    def drop(self, worker_id: str) -> None:
        """Forget (and close) the link of a worker that left."""
        channel = self.links.pop(worker_id, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        """Close every socket and remove the directory."""
        for channel in self.links.values():
            channel.close()
        self.links.clear()
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)
