"""Where a forked worker's time goes, for benchmarks: ``PYTEST_EXECUTOR_FORK_STATS=<directory>``.

With the variable set, every worker of the ``forked`` backend keeps, in
``<directory>/<worker pid>.json``, the CPU time and page faults of the children
it reaped and its own since its first fork (the totals are updated after every
child, so the file holds them even when the worker is killed at the end).
``benchmarks/bench_forked.py`` prints them per test.

The counting must not cost what it measures: rewriting and renaming a file
after every child cost the worker about 0.4 ms of CPU and 20 page faults per
child (measured on 1,000 trivial tests), which inflated the benchmark's wall
time and its worker numbers.
The file is therefore mapped in memory once and each update is a copy into
that mapping, without a system call; the kernel writes it back, killed
worker or not.
"""

from __future__ import annotations

import json
import mmap
import os
import resource
from typing import Any, final

ENV_FORK_STATS = "PYTEST_EXECUTOR_FORK_STATS"
"""A directory to write the statistics in; unset (the default): none are kept."""

_SIZE = 1024
"""Bytes of the mapped file: the JSON text, padded with spaces (still valid JSON)."""


def _usage(value: Any) -> dict[str, float]:
    return {"user": value.ru_utime, "sys": value.ru_stime, "faults": float(value.ru_minflt)}


@final
class ForkStats:
    """Totals of one worker: its reaped children's and its own, since its first fork."""

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, f"{os.getpid()}.json")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file
        self._children = 0
        self._child = {"user": 0.0, "sys": 0.0, "faults": 0.0}
        self._start = _usage(resource.getrusage(resource.RUSAGE_SELF))
        self._write()

    @classmethod
    def from_env(cls) -> ForkStats | None:
        """The statistics to keep, if the environment asks for them."""
        directory = os.environ.get(ENV_FORK_STATS)
        return cls(directory) if directory else None

    def reaped(self, usage: Any) -> None:
        """Count a child that exited (``usage``: its ``os.wait4`` resource usage) and update the totals."""
        self._children += 1
        for key, value in _usage(usage).items():
            self._child[key] += value
        self._write()

    def _write(self) -> None:
        own = _usage(resource.getrusage(resource.RUSAGE_SELF))
        totals = {"children": self._children, "child": self._child,
                  "worker": {key: own[key] - self._start[key] for key in own}}
        text = json.dumps(totals).encode().ljust(_SIZE)
        self._map[:] = text[:_SIZE]  # a few hundred bytes: never cut


__all__ = ["ENV_FORK_STATS", "ForkStats"]
