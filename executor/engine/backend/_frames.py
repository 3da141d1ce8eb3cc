"""Length-prefixed frames on a blocking stream socket: the engine <-> worker/zygote framing.

Kept apart from the worker's entry points so that the serving loop, the
zygote and the engine side can all import it without importing each other.
"""

from __future__ import annotations

import pickle
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


def dumps(obj: T.Any) -> bytes:
    """Pickle a request or reply: with the C pickler where that is faithful, else with cloudpickle.

    A small message costs about a fifth with :mod:`pickle`.  But pickle names
    functions and classes by module: those of ``__main__`` (the other process
    has another one) and what it cannot name (lambdas, local functions) go
    through cloudpickle, which sends them by value.
    """
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        data = b"__main__"
    if b"__main__" in data:  # a name cloudpickle would send by value (or a string that mentions it)
        import cloudpickle

        return T.cast(bytes, cloudpickle.dumps(obj))
    return data
