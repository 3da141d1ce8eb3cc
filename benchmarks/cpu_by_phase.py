"""Where a plugin run's CPU goes: per phase of the run, per level of its process tree.

Runs one ``pytest`` command (given after ``--``) with ``--executor-report``
added, samples the CPU time (user + system) of every process in its tree ten
times a second with psutil, and splits it by the run's phases, read from the
report afterwards:

* ``start``: from the command's start to the first test's start;
* ``run``: from the first test's start to the last test's end;
* ``end``: from the last test's end to the command's exit.

Processes are grouped by their depth below the pytest process (0 is the
controller).  On the ``process`` backend depth 1 is the pool's zygote and 2 the
workers; on ``dask`` with the run's own cluster, 1 is the fork server (and
``multiprocessing``'s resource tracker), 2 the dask workers, 3 their spare
zygotes and 4 the pytest sessions.  CPU a process used between two samples
before it exited is not seen, and the sampling itself costs some CPU: read the
split, not the last digit.

    python benchmarks/cpu_by_phase.py -- python -m pytest -q --executor-backend=dask --executor-workers=16
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _pytest_run import as_in_a_users_shell

Samples = list[tuple[float, dict[int, float]]]


def sample_tree(proc: subprocess.Popen[bytes], parents: dict[int, int], every: float = 0.1) -> Samples:
    """CPU seconds of each process of ``proc``'s tree, every ``every`` seconds until it exits; fills ``parents``."""
    root = psutil.Process(proc.pid)
    samples: Samples = []
    while proc.poll() is None:
        snapshot: dict[int, float] = {}
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for member in tree:
            try:
                times = member.cpu_times()
                parents.setdefault(member.pid, member.ppid())
            except psutil.Error:
                continue
            snapshot[member.pid] = times.user + times.system
        samples.append((time.time(), snapshot))
        time.sleep(every)
    return samples


def cpu_at(samples: Samples, moment: float) -> dict[int, float]:
    """Each process's CPU seconds as last sampled at or before ``moment``."""
    seen: dict[int, float] = {}
    for when, snapshot in samples:
        if when > moment:
            break
        seen.update(snapshot)
    return seen


def depth(pid: int, parents: dict[int, int], root: int) -> int:
    """How far below ``root`` the process ``pid`` is."""
    level = 0
    while pid != root and pid in parents:
        pid, level = parents[pid], level + 1
    return level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the pytest command")
    options = parser.parse_args()
    command = [part for part in options.command if part != "--"] or sys.exit("give the pytest command after --")
    as_in_a_users_shell()
    with tempfile.TemporaryDirectory(prefix="cpu-by-phase-") as folder:
        report = Path(folder) / "report.json"
        started = time.time()
        proc = subprocess.Popen([*command, f"--executor-report={report}"], stdout=subprocess.DEVNULL)
        parents: dict[int, int] = {}
        samples = sample_tree(proc, parents)
        ended = time.time()
        jobs = [job for job in json.loads(report.read_text())["jobs"] if job.get("start") and job.get("stop")]
    first, last = min(job["start"] for job in jobs), max(job["stop"] for job in jobs)
    print(f"wall {ended - started:.2f} s: start {first - started:.2f}, run {last - first:.2f}, end {ended - last:.2f}")
    for name, begin, stop in (("start", started, first), ("run", first, last), ("end", last, ended)):
        before, after = cpu_at(samples, begin), cpu_at(samples, stop)
        by_depth: dict[int, float] = collections.defaultdict(float)
        count: collections.Counter[int] = collections.Counter()
        for pid, seconds in after.items():
            level = depth(pid, parents, proc.pid)
            by_depth[level] += seconds - before.get(pid, 0.0)
            count[level] += 1
        levels = ", ".join(f"depth {level} ({count[level]}): {by_depth[level]:.2f}" for level in sorted(by_depth))
        print(f"{name:>5} CPU s {sum(by_depth.values()):.2f} = {levels}")


if __name__ == "__main__":
    main()
