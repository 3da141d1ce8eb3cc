"""Length-prefixed frames on a blocking stream socket: the engine <-> worker/zygote framing.

Kept apart from the worker's entry points so that the serving loop, the
zygote and the engine side can all import it without importing each other.
"""

from __future__ import annotations

import struct
import typing as T

_HEADER = struct.Struct("!Q")


def send_frame(sock: T.Any, data: bytes) -> None:
    """Send one length-prefixed message on a blocking stream socket."""
    header = _HEADER.pack(len(data))
    if len(data) < 65536:  # one send for the common small message
        sock.sendall(header + data)
    else:  # no copy of a large payload into a new buffer
        sock.sendall(header)
        sock.sendall(data)


def recv_frame(sock: T.Any) -> bytes:
    """Receive one length-prefixed message; raise :class:`EOFError` when the peer closed."""
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    return bytes(_recv_exactly(sock, size))


def _recv_exactly(sock: T.Any, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the peer closed the connection")
        got += n
    return buf
