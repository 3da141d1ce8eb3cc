"""Timing one pytest run in a subprocess, shared by the plugin benchmarks."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def timed_pytest(cwd: Path, args: Sequence[str]) -> tuple[float, float]:
    """Run ``python -m pytest -q -p no:cacheprovider *args`` in ``cwd``.

    Returns the wall seconds and the child's CPU seconds (user + system); exits
    with the run's output if pytest failed, so no failed run is ever timed.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}) in {cwd}:\n"
                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu
