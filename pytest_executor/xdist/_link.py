"""The wire between the xdist controller and our worker side: graph files and the socket link.

* :class:`Graph` — a worker's resolved plan as node indices, written as JSON
  into the rendezvous directory before xdist reports the worker's collection;
* :func:`connect` / :class:`Rendezvous` — a local stream socket (Unix socket in
  a private directory, else loopback TCP): the worker's plain-text hello with the
  run's random token (:mod:`pytest_executor.backends._hello`), then framed messages
  (:mod:`pytest_executor.backends._protocol`) from the controller: ``tickets``
  (``items``: ``[(index, wait), ...]``) and ``done`` (``index``, ``outcome``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, final

from pytest_executor.backends._hello import hello_line, receive_hello
from pytest_executor.backends._protocol import FdChannel
from pytest_executor.backends._rundirs import (
    SHORT_PREFIX,
    make_private_directory,
    reap_stale_directories,
    remove_private_directory,
)

_CONNECT_TIMEOUT = 60.0  # seconds for a worker's hello to reach the controller
_HELLO_TIMEOUT = 5.0
"""Seconds a connection may take to send its hello: a silent peer cannot hold up the link."""
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS

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


def connect(address: str, token: str, worker_id: str) -> FdChannel:
    """Open the worker end of the link (``unix:PATH`` or ``tcp:HOST:PORT``) and say hello.

    The hello is plain text (:mod:`pytest_executor.backends._hello`): the controller
    checks the token before it unpickles anything from this connection.
    """
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(hello_line(token, "xdist", worker_id))
    sock.settimeout(None)
    fd = sock.detach()
    return FdChannel(fd, fd)


@final
class Rendezvous:
    """The controller's end: a private directory for graphs and a listening socket.

    The socket is a Unix socket in the private (0700) directory whenever the
    path fits; with a long ``TMPDIR`` it goes to a short private directory
    under ``/tmp``; loopback TCP is the last resort.  Every connection must
    open with the plain-text hello and the run's token.
    """

    def __init__(self) -> None:
        reap_stale_directories()
        self.directory = make_private_directory(tempfile.gettempdir())
        self.token = secrets.token_hex(16)
        self._socket_directory: str | None = None
        self.server, self.address = self._listen()
        self.server.listen(64)
        self.links: dict[str, FdChannel] = {}

    def _listen(self) -> tuple[socket.socket, str]:
        if hasattr(socket, "AF_UNIX"):
            directory: str | None = self.directory
            if len(os.path.join(self.directory, "link").encode()) >= _MAX_UNIX_PATH:
                directory = self._socket_directory = _short_private_directory()
            path = os.path.join(directory, "link") if directory is not None else ""
            if directory is not None and len(path.encode()) < _MAX_UNIX_PATH:
                server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.bind(path)
                return server, f"unix:{path}"
        server = socket.create_server(("127.0.0.1", 0))
        return server, f"tcp:127.0.0.1:{server.getsockname()[1]}"

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
            hello = receive_hello(sock, self.token, min(left, _HELLO_TIMEOUT))
            if hello is None or hello.role != "xdist" or hello.rest:
                sock.close()  # not one of our workers: nothing it sent is ever unpickled
                continue
            fd = sock.detach()
            old = self.links.pop(hello.worker, None)
            if old is not None:
                old.close()
            self.links[hello.worker] = FdChannel(fd, fd)
        return self.links[worker_id]

    def drop(self, worker_id: str) -> None:
        """Forget (and close) the link of a worker that left."""
        channel = self.links.pop(worker_id, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        """Close every socket and remove the directories."""
        for channel in self.links.values():
            channel.close()
        self.links.clear()
        self.server.close()
        remove_private_directory(self.directory)
        if self._socket_directory is not None:
            remove_private_directory(self._socket_directory)
            self._socket_directory = None


def _short_private_directory() -> str | None:
    """A fresh 0700 directory with a short path, for a Unix socket when ``TMPDIR`` is long."""
    try:
        return make_private_directory("/tmp", prefix=SHORT_PREFIX)
    except OSError:
        return None
