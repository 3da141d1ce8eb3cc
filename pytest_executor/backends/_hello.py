"""The plain-text hello that opens every socket connection to a controller.

Rule for every channel we own: the first bytes a peer sends are one ASCII line
``PYTEST-EXECUTOR <token> <role> <worker id>\\n``.  The controller checks it —
prefix, shape, and the token compared in constant time on bytes — *before* it
unpickles anything from that connection.  A line that is too long, not ASCII,
has the wrong prefix or the wrong token only closes that one connection: a
hostile local peer can never crash or stall the run, nor reach the unpickler.
"""

from __future__ import annotations

import hmac
import socket
import time
from typing import NamedTuple, final

PREFIX = b"PYTEST-EXECUTOR"
MAX_LINE = 256
"""Longest hello accepted (the real one is ~80 bytes); longer closes the connection."""


@final
class Hello(NamedTuple):
    """A hello that passed the checks: who the peer says it is."""

    role: str
    worker: str
    rest: bytes
    """Bytes the peer sent after the hello line (the start of its framed stream)."""


def hello_line(token: str, role: str, worker: str) -> bytes:
    """The hello a peer sends first (ASCII; ``role``/``worker`` must not contain spaces)."""
    return b" ".join((PREFIX, token.encode("ascii"), role.encode("ascii"), worker.encode("ascii"))) + b"\n"


def line_complete(buffered: bytes) -> bool:
    """Whether ``buffered`` holds a whole hello line, or enough bytes to reject it."""
    return b"\n" in buffered or len(buffered) >= MAX_LINE


def check_hello(buffered: bytes, token: str) -> Hello | None:
    """The peer's :class:`Hello` if ``buffered`` starts with a valid line for ``token``, else ``None``."""
    line, newline, rest = buffered.partition(b"\n")
    if not newline or len(line) >= MAX_LINE or not line.isascii():
        return None
    parts = line.split(b" ")
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    if not hmac.compare_digest(parts[1], token.encode("ascii")):
        return None
    return Hello(parts[2].decode("ascii"), parts[3].decode("ascii"), rest)


def receive_hello(sock: socket.socket, token: str, timeout: float) -> Hello | None:
    """Read a hello from a blocking ``sock`` within ``timeout`` seconds; ``None`` if it is not valid."""
    deadline = time.monotonic() + timeout
    buffered = b""
    try:
        while not line_complete(buffered):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            data = sock.recv(MAX_LINE - len(buffered))
            if not data:
                return None
            buffered += data
    except OSError:  # includes the timeout
        return None
    finally:
        sock.settimeout(None)
    return check_hello(buffered, token)


__all__ = ["Hello", "MAX_LINE", "PREFIX", "check_hello", "hello_line", "line_complete", "receive_hello"]
