"""Where a forked worker's time goes, for benchmarks: ``PYTEST_EXECUTOR_FORK_STATS=<directory>``.

With the variable set, every worker of the ``forked`` backend keeps, in
``<directory>/<worker pid>.json``, the CPU time and page faults of the children
it reaped and its own since its first fork (each file rewritten after every
child, so it holds the totals even when the worker is killed at the end).
``benchmarks/bench_forked.py`` prints them per test.
"""

from __future__ import annotations

import json
import os
import resource
from typing import Any, final

ENV_FORK_STATS = "PYTEST_EXECUTOR_FORK_STATS"
"""A directory to write the statistics in; unset (the default): none are kept."""


def _usage(value: Any) -> dict[str, float]:
    return {"user": value.ru_utime, "sys": value.ru_stime, "faults": float(value.ru_minflt)}


@final
class ForkStats:
    """Totals of one worker: its reaped children's and its own, since its first fork."""

    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, f"{os.getpid()}.json")
        self._children = 0
        self._child = {"user": 0.0, "sys": 0.0, "faults": 0.0}
        self._start = _usage(resource.getrusage(resource.RUSAGE_SELF))

    @classmethod
    def from_env(cls) -> ForkStats | None:
        """The statistics to keep, if the environment asks for them."""
        directory = os.environ.get(ENV_FORK_STATS)
        return cls(directory) if directory else None

    def reaped(self, usage: Any) -> None:
        """Count a child that exited (``usage``: its ``os.wait4`` resource usage) and save the totals."""
        self._children += 1
        for key, value in _usage(usage).items():
            self._child[key] += value
        own = _usage(resource.getrusage(resource.RUSAGE_SELF))
        totals = {"children": self._children, "child": self._child,
                  "worker": {key: own[key] - self._start[key] for key in own}}
        partial = self._path + ".part"
        with open(partial, "w") as out:
            json.dump(totals, out)
        os.replace(partial, self._path)  # a reader never sees half a file


__all__ = ["ENV_FORK_STATS", "ForkStats"]
