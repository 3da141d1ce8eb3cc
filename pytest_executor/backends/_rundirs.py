"""Private per-run directories in the temp dir, and reaping those of dead controllers.

A run's directory is named ``<prefix><pid>-<start time>-<random>``: the pid
and start time of the controller that made it.  A controller killed with
SIGKILL cannot remove its own; the next run removes every such directory of
ours whose controller no longer exists (the start time tells a reused pid
apart).  Only directories owned by the current user are ever touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

import psutil

DIR_PREFIX = "pytest-executor-xdist-"
"""Prefix of the rendezvous directories under the temp dir."""
SHORT_PREFIX = "pxe-"
"""Prefix of the short socket directories under ``/tmp`` (a long ``TMPDIR`` leaves no room)."""
_NAME = re.compile(r"^(?:pytest-executor-xdist-|pxe-)(\d+)-(\d+)-")


def _own_start_time() -> int:
    return int(psutil.Process().create_time())


def make_private_directory(parent: str, prefix: str = DIR_PREFIX) -> str:
    """Create a fresh 0700 directory in ``parent`` named after this process."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{_own_start_time()}-", dir=parent)


def remove_private_directory(path: str) -> None:
    """Remove a directory made by :func:`make_private_directory` (whatever is left in it)."""
    shutil.rmtree(path, ignore_errors=True)


def _controller_alive(pid: int, start_time: int) -> bool:
    try:
        return int(psutil.Process(pid).create_time()) == start_time
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def reap_stale_directories(parents: tuple[str, ...] | None = None) -> list[str]:
    """Remove our run directories whose controller is gone; return their paths."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    removed = []
    for parent in parents or (tempfile.gettempdir(), "/tmp"):
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                match = _NAME.match(entry.name)
                if match is None or not entry.is_dir(follow_symlinks=False):
                    continue
                if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if not _controller_alive(int(match[1]), int(match[2])):
                    remove_private_directory(entry.path)
                    removed.append(entry.path)
    return removed


__all__ = ["DIR_PREFIX", "SHORT_PREFIX", "make_private_directory", "reap_stale_directories",
           "remove_private_directory"]
