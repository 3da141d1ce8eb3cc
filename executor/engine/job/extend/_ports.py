"""Addresses and ports for web-app jobs: validation, free-port picking, readiness probing."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from typing import Awaitable, Callable

import psutil

__all__ = [
    "NonLocalAddress",
    "check_local_ip",
    "check_port",
    "pick_free_port",
    "port_is_free",
    "probe_host",
    "wait_until_listening",
]


def _local_interface_addresses() -> set[str]:
    addresses: set[str] = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addresses.add(entry.address.split("%", 1)[0])
    return addresses


class NonLocalAddress(ValueError, NotImplementedError):
    """A web app was asked to serve on an address that is not this machine's.

    A ``ValueError`` (bad argument) and, as in executor-engine 0.3.3 (which
    "only supports launching on the local machine"), a ``NotImplementedError``.
    """


def check_local_ip(ip: object) -> str:
    """Return ``ip`` if it is an address of this machine, else raise a ``ValueError``.

    Accepted: ``"localhost"``, loopback addresses, the wildcard ``0.0.0.0`` /
    ``::`` and the addresses of the local network interfaces. Web-app jobs
    start their servers here, so a remote address could never be served.
    """
    if not isinstance(ip, str):
        raise TypeError(f"ip must be a string such as '127.0.0.1', got {type(ip).__name__}")
    if ip == "localhost":
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise NonLocalAddress(f"ip {ip!r} is not an IP address: use a local one such as '127.0.0.1'") from None
    if address.is_loopback or address.is_unspecified or str(address) in _local_interface_addresses():
        return ip
    raise NonLocalAddress(
        f"ip {ip!r} is not an address of this machine: web-app jobs run their server locally, "
        "use '127.0.0.1', 'localhost', '0.0.0.0' or a local interface address"
    )


def check_port(port: object) -> int | None:
    """Return ``port`` if it is ``None`` (pick one) or a valid TCP port number, else raise."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int from 1 to 65535 or None (pick a free one), got {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be from 1 to 65535 or None (pick a free one), got {port}")
    return port


def probe_host(ip: str) -> str:
    """The address to connect to when checking a server bound to ``ip`` (wildcards → loopback)."""
    if ip in ("0.0.0.0", ""):
        return "127.0.0.1"
    if ip == "::":
        return "::1"
    return ip


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def pick_free_port(ip: str) -> int:
    """Ask the OS for a port that is free on ``ip`` right now."""
    host = probe_host(ip) if ip == "localhost" else ip
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host if host != "localhost" else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(ip: str, port: int) -> bool:
    """Whether a server could bind ``(ip, port)`` now (SO_REUSEADDR, like most servers)."""
    host = "127.0.0.1" if ip == "localhost" else ip
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


async def _answers(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def wait_until_listening(
    ip: str,
    port: int,
    timeout: float,
    gave_up: Callable[[], bool] = lambda: False,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> bool:
    """Wait until something accepts TCP connections on ``(ip, port)``.

    Connection attempts back off from 5 ms to 100 ms. Returns False when
    ``timeout`` passes or as soon as ``gave_up()`` says the server died.
    """
    host = probe_host(ip)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if gave_up():
            return False
        if await _answers(host, port, timeout=1.0):
            return True
        if time.monotonic() >= deadline:
            return False
        await pause(delay)
        delay = min(delay * 2, 0.1)
