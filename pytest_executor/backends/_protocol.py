"""The wire protocol between a runner (controller side) and a worker session.

Every message is a plain ``(name, kwargs)`` pair of builtin data.  A worker
session (:mod:`pytest_executor.backends.worker`) is the hosted state of a
worker of the engine's process pool on the ``process``, ``forked``,
``subprocess`` and ``dask`` backends: it exchanges these messages with its
controller through an :class:`~pytest_executor.backends._hosted.EngineLink`
(a call hands over one message and is answered with the session's events; on
the ``dask`` backend the host task relays them through dask's comms,
:mod:`pytest_executor.backends._dask_host`).  Where messages cross a pipe or a
socket (the ``forked`` backend's item children, the xdist link) they are
pickled and framed with a 4-byte big-endian length prefix (:class:`FrameDecoder`,
:class:`FdChannel`).

Messages from the controller to a worker:

``("run", {"tasks": [(index, windex, nodeid, timeout), ...]})``
    run these items, in order.  ``index`` is the controller's item index (echoed
    back in events), ``windex`` the worker's own index of the item or ``-1`` to
    look it up by ``nodeid`` (one-shot workers).
``("shutdown", {})``
    no more tasks: tear down what is left and end the session.

Messages from a worker to the controller:

``("collected", {"ids": [...], "deselected": [...], "pid": int, "capture_fds": [...]})``
    the worker's collection (ids of ``session.items``, then those deselected),
    its pid and, with ``--capture=fd``, the descriptors of its capture files so
    the controller can recover a crashed test's output (Linux ``/proc``).
``("events", {"items": [(name, kwargs), ...]})``
    a batch of run events: ``logstart``, ``logreport`` (``data`` = the report's
    serializable dict), ``result``, ``done``, ``warning``, ``missing``.
``("fatal", {"message": str})``
    the worker hit an internal error and is about to exit.
``("bye", {})``
    the run loop ended after ``shutdown``: every report was sent, the process
    only winds down its session now (the controller reaps it later).
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections.abc import Iterator
from typing import Any, Protocol, final

Message = tuple[str, dict[str, Any]]
"""One ``(name, kwargs)`` protocol message."""

_HEADER = struct.Struct("!I")
_READ_SIZE = 1 << 16

ENV_WORKER = "PYTEST_EXECUTOR_WORKER"
"""Set in every worker process to its worker id; makes the controller inert."""
ENV_ONESHOT = "PYTEST_EXECUTOR_ONESHOT"
"""Set to ``1`` in a subprocess worker that runs exactly one item."""
ENV_FORK_ITEMS = "PYTEST_EXECUTOR_FORK_ITEMS"
"""Set to ``1`` in a worker of the ``forked`` backend: it runs each item in a child forked from itself."""
ENV_PATH_MAP = "PYTEST_EXECUTOR_PATH_MAP"
"""``<copy root>\\n<controller rootdir>``: a session running from a shipped copy reports the controller's paths."""


def path_map_from_env() -> tuple[str, str] | None:
    """The ``(copy root, controller rootdir)`` pair of :data:`ENV_PATH_MAP`, if set."""
    old, _, new = os.environ.get(ENV_PATH_MAP, "").partition("\n")
    return (old, new) if old and new else None


def map_paths(value: Any, mapping: tuple[str, str] | None) -> Any:
    """``value`` with every string's copy-root prefix replaced by the controller's rootdir (see :data:`ENV_PATH_MAP`)."""
    if mapping is None:
        return value
    old, new = mapping
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, dict):
        return {key: map_paths(item, mapping) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_paths(item, mapping) for item in value)
    return value


class ChannelClosed(EOFError):
    """The other side of a channel went away."""


def _sanitize(value: Any) -> Any:
    """Replace whatever cannot be pickled by its ``repr`` (plugins put odd things on reports)."""
    if isinstance(value, dict):
        return {_sanitize(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_sanitize(v) for v in value)
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return repr(value)
    return value


def encode(name: str, kwargs: dict[str, Any]) -> bytes:
    """Serialize one message to a length-prefixed frame."""
    try:
        payload = pickle.dumps((name, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        payload = pickle.dumps((name, _sanitize(kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


@final
class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole messages back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data`` and return every message completed by it."""
        self._buffer += data
        messages: list[Message] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            name, kwargs = pickle.loads(memoryview(buffer)[offset + _HEADER.size : end])
            messages.append((name, kwargs))
            offset = end
        if offset:
            del buffer[:offset]
        return messages


def read_available(fd: int) -> Iterator[bytes]:
    """Yield what the non-blocking ``fd`` holds right now, chunk by chunk.

    Stops when nothing more is available yet; at end of file (or on a read
    error, which ends the stream as well) the last chunk yielded is ``b""``.
    """
    while True:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        yield data
        if not data:
            return


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a descriptor (waiting while a non-blocking one is full)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


class Channel(Protocol):
    """The worker side of a transport: blocking send and receive of messages."""

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one ``(name, kwargs)`` message."""

    def recv(self, timeout: float | None = None) -> Message:
        """Return the next message; raise :class:`ChannelClosed` at EOF, ``TimeoutError`` on timeout."""

    def close(self) -> None:
        """Release the transport."""


@final
class FdChannel:
    """A :class:`Channel` over two file descriptors (a pipe pair or one socket twice)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._decoder = FrameDecoder()
        self._pending: list[Message] = []

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one message (blocks while the controller's pipe is full)."""
        try:
            write_all(self._write_fd, encode(name, kwargs))
        except (BrokenPipeError, ConnectionError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def recv(self, timeout: float | None = None) -> Message:
        """Block until a whole message arrived (or ``timeout`` seconds passed)."""
        while not self._pending:
            if timeout is not None:
                ready, _, _ = select.select([self._read_fd], [], [], timeout)
                if not ready:
                    raise TimeoutError("no message from the controller")
            try:
                data = os.read(self._read_fd, _READ_SIZE)
            except ConnectionError:
                data = b""
            if not data:
                raise ChannelClosed("the controller closed the channel")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def close(self) -> None:
        """Close both descriptors (once)."""
        for fd in {self._read_fd, self._write_fd}:
            try:
                os.close(fd)
            except OSError:
                pass
