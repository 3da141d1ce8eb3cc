"""Timing one pytest run in a subprocess, shared by the plugin benchmarks."""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


SHELL_ONLY_HERE = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
"""Variables this machine sets that a user's shell does not: without bytecode caching, every timed
pytest process would compile its imports again."""


_SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|warnings?|deselected)\b")


def summary_counts(stdout: str, stderr: str = "") -> dict[str, int]:
    """The counts of pytest's final summary line (``3 failed, 2900 passed, 2 warnings in 1.2s``).

    Kinds are singular for errors and warnings (``error``, ``warning``); exits
    with the output's end if there is no summary line.
    """
    lines = [line for line in stdout.splitlines() if re.search(r" in [\d.]+s\b", line)]
    if not lines:
        sys.exit(f"no summary line in pytest's output:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return {kind.rstrip("s") if kind.startswith(("error", "warning")) else kind: int(n)
            for n, kind in _SUMMARY_COUNT.findall(lines[-1])}


def names_option(value: str, known: Sequence[str], option: str, parser: argparse.ArgumentParser) -> list[str]:
    """The comma-separated names of ``option``; a usage error through ``parser`` for one not in ``known``."""
    names = [name for name in value.split(",") if name]
    for name in names:
        if name not in known:
            parser.error(f"{option}: unknown name {name!r}; known: {', '.join(known)}")
    return names


def as_in_a_users_shell() -> None:
    """Drop :data:`SHELL_ONLY_HERE` from this process's environment, so the runs it starts get a user's."""
    for name in SHELL_ONLY_HERE:
        os.environ.pop(name, None)


@dataclass
class PytestRun:
    """One finished ``python -m pytest`` run: where it started, how long it took, what it said."""

    pid: int
    started: float  # time.time() just before the process was started
    wall: float
    cpu: float  # the run's processes (controller and its waited-for children), user + system
    returncode: int
    stdout: str
    stderr: str


def run_pytest(
    cwd: Path, args: Sequence[str], env: Mapping[str, str] | None = None, ok_codes: Sequence[int] = (0,)
) -> PytestRun:
    """Run ``python -m pytest -q -p no:cacheprovider *args`` in ``cwd``.

    Exits with the run's output if the return code is not in ``ok_codes``, so no
    broken run is ever timed.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok_codes:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}) in {cwd}:\n"
                 f"{stdout[-3000:]}\n{stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PytestRun(proc.pid, started, wall, cpu, proc.returncode, stdout, stderr)


def timed_pytest(cwd: Path, args: Sequence[str]) -> tuple[float, float]:
    """Run ``python -m pytest -q -p no:cacheprovider *args`` in ``cwd``; wall and CPU seconds.

    Exits with the run's output if pytest failed, so no failed run is ever timed.
    """
    run = run_pytest(cwd, args)
    return run.wall, run.cpu
