"""Helpers of the extended-job tests: finding stray processes and listening ports with psutil."""

from __future__ import annotations

import contextlib
import os
import time
import typing as T
import uuid

import psutil


def unique_sleep() -> str:
    """A ``sleep`` argument no other process uses, so the test can find its own sleepers anywhere."""
    return f"{900 + uuid.uuid4().int % 100}.{uuid.uuid4().int % 10**6:06d}"


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains ``marker``, orphans included."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                continue
            if marker in " ".join(process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def listening(port: int) -> bool:
    """Whether some socket of this machine listens on TCP ``port``."""
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
               for c in psutil.net_connections("tcp"))


def listeners(port: int) -> list[psutil.Process]:
    """The processes listening on TCP ``port`` (to clean up after a test that failed half-way)."""
    found = []
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            if connection.pid is not None:
                found.append(psutil.Process(connection.pid))
    return found


def wait_until(predicate: T.Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``; the result, for an assert."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


#: helpers multiprocessing starts once and keeps for the life of the interpreter (not leaks)
_INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def live_descendants() -> set[int]:
    """Pids of this process's running descendants (multiprocessing's own helpers excepted)."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(helper in " ".join(child.cmdline()) for helper in _INTERPRETER_HELPERS):
                continue
            out.add(child.pid)
        except psutil.Error:
            continue
    return out


def new_descendants(before: set[int]) -> set[int]:
    """Descendants alive now that were not in ``before``."""
    return live_descendants() - before


@contextlib.contextmanager
def leaves_no_process(timeout: float = 10.0) -> T.Iterator[None]:
    """Assert that no process started in the block (workers of engines stopped in it included) outlives it."""
    before = live_descendants()
    yield
    assert wait_until(lambda: not new_descendants(before), timeout=timeout), new_descendants(before)
