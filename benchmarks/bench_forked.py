"""The ``forked`` backend beside ``process`` and ``subprocess``, in one run (issue 19).

Generates two suites in a private temporary directory and times whole
``pytest`` runs (start-up and collection included), round-robin, keeping the
median of ``--repeat`` runs:

* ``trivial`` — ``--tests`` (2,000) tests that do nothing: ``forked`` against
  ``process``, both with ``--workers`` (2) workers.  Printed: both walls, their
  ratio (target ≤ 2×), and the per-test overhead of forking over ``process``,
  as seen by one worker: ``(forked wall - process wall) × workers / tests``
  (target ≤ 5 ms), and as CPU of the whole run per test.  The per-worker
  figure is what one test adds to its worker's time; the workers run side by
  side, so the run's wall grows by only ``1 / workers`` of it per test: that
  amortized figure, ``(forked wall - process wall) / tests``, is printed
  too, labelled, and judged against nothing (the target is the per-worker one).
* ``session`` — 200 tests using one session fixture that builds a 200,000-entry
  table: ``forked`` by default (the fixture is built in every test's child)
  against ``forked --executor-fork-shared=table`` (built once per worker and
  shared copy-on-write), with ``process`` for reference.
* ``crashy`` — 40 tests, every fourth one segfaults: ``forked`` against
  ``subprocess``.  Both must report the same outcomes (30 passed, 10 failed);
  target: forked in under 1/10 of subprocess's wall.

Where a forked test's time goes is printed too, from the workers' own counts
(``PYTEST_EXECUTOR_FORK_STATS``): per test, the child's CPU and page faults
(mostly copy-on-write faults: every page a child writes to is copied) and the
worker's (the ``fork()`` itself, its own faults, forwarding the reports).

Every run's outcome counts are checked against the expected ones; the script
stops at the first mismatch.  Numbers depend on the machine's load: the
script prints the load average before and after.

Usage::

    python benchmarks/bench_forked.py [--repeat 3] [--tests 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _pytest_run import PytestRun, run_pytest, summary_counts
from _suites import write_trivial_suite

_OUTCOMES = ("passed", "failed", "skipped", "error")
_COMMON = ["--executor-table=none", "-p", "no:rerunfailures", "-p", "no:randomly"]

CRASHY = '''
import ctypes

import pytest


@pytest.mark.parametrize("n", range(40))
def test_sometimes_crashes(n):
    if n % 4 == 3:
        ctypes.string_at(0)  # a segfault
'''


SESSION_CONFTEST = '''
import pytest


@pytest.fixture(scope="session")
def table():
    return {n: str(n) for n in range(200_000)}  # an expensive, read-only session resource
'''

SESSION_TESTS = '''
import pytest


@pytest.mark.parametrize("n", range(200))
def test_lookup(table, n):
    assert table[n * 7] == str(n * 7)
'''


def outcomes(run: PytestRun) -> dict[str, int]:
    """The passed, failed, skipped and error counts of pytest's summary line."""
    return {kind: n for kind, n in summary_counts(run.stdout, run.stderr).items() if kind in _OUTCOMES}


def timed(
    suite: Path, backend: str, workers: int, expected: dict[str, int], env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> PytestRun:
    """One run of ``suite`` on ``backend``; stops the script if the outcomes differ from ``expected``."""
    args = [f"--executor-backend={backend}", f"--executor-workers={workers}", *_COMMON, *extra]
    run = run_pytest(suite, args, env=env, ok_codes=(0, 1))
    got = outcomes(run)
    if got != expected:
        sys.exit(f"{backend} on {suite.name}: outcomes {got}, expected {expected}\n{run.stdout[-3000:]}")
    return run


def fork_stats(directory: Path) -> dict[str, float]:
    """Per forked test: the child's and the worker's CPU ms and page faults (the workers' stats files)."""
    totals: dict[str, float] = {}
    children = 0
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        children += data["children"]
        for who in ("child", "worker"):
            for key, value in data[who].items():
                totals[f"{who} {key}"] = totals.get(f"{who} {key}", 0.0) + value
    return {key: value / max(children, 1) * (1000 if key.split()[1] != "faults" else 1) for key, value in totals.items()}


def load() -> str:
    """The 1-minute load average (how busy the machine is while measuring)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main() -> None:
    """Run both comparisons and print their ratios against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-forked-") as tmp:
        trivial = Path(tmp) / "trivial"
        write_trivial_suite(trivial, args.tests)
        crashy = Path(tmp) / "crashy"
        crashy.mkdir()
        (crashy / "test_crashy.py").write_text(CRASHY)
        (crashy / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        session = Path(tmp) / "session"
        session.mkdir()
        (session / "conftest.py").write_text(SESSION_CONFTEST)
        (session / "test_session.py").write_text(SESSION_TESTS)
        (session / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")

        stats: dict[str, float] = {}
        walls: dict[str, list[float]] = {"process": [], "forked": [], "crash-forked": [], "crash-subprocess": [],
                                         "session-process": [], "session-forked": [], "session-shared": []}
        cpus: dict[str, list[float]] = {"process": [], "forked": []}
        for _ in range(args.repeat):
            for backend in ("process", "forked"):
                counts = Path(tempfile.mkdtemp(dir=tmp))
                env = {"PYTEST_EXECUTOR_FORK_STATS": str(counts)} if backend == "forked" else None
                run = timed(trivial, backend, args.workers, {"passed": args.tests}, env)
                stats = fork_stats(counts) if backend == "forked" else stats
                walls[backend].append(run.wall)
                cpus[backend].append(run.cpu)
            for name, backend, extra in (("session-process", "process", ()), ("session-forked", "forked", ()),
                                         ("session-shared", "forked", ("--executor-fork-shared=table",))):
                walls[name].append(timed(session, backend, args.workers, {"passed": 200}, extra=extra).wall)
            for backend in ("forked", "subprocess"):
                run = timed(crashy, backend, args.workers, {"passed": 30, "failed": 10})
                walls[f"crash-{backend}"].append(run.wall)

    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    ratio = wall["forked"] / wall["process"]
    overhead = (wall["forked"] - wall["process"]) * args.workers / args.tests * 1000
    cpu_overhead = (cpu["forked"] - cpu["process"]) / args.tests * 1000
    crash_ratio = wall["crash-forked"] / wall["crash-subprocess"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"\n{args.tests} trivial tests, {args.workers} workers (median of {args.repeat}):")
    print(f"  process  {wall['process']:7.2f} s   CPU {cpu['process']:6.2f} s")
    print(f"  forked   {wall['forked']:7.2f} s   CPU {cpu['forked']:6.2f} s")
    print(f"  forked / process: {ratio:.2f}x (target <= 2x: {verdict(ratio <= 2)})")
    print(f"  per-test overhead over process, per worker: {overhead:.2f} ms (target <= 5 ms: {verdict(overhead <= 5)})")
    print(f"  the same amortized over the run's {args.workers} parallel workers (wall difference / tests): "
          f"{overhead / args.workers:.2f} ms")
    print(f"  per-test CPU over process (whole run): {cpu_overhead:.2f} ms")
    if stats:
        print(f"  per forked test (last run): child {stats['child user']:.2f} ms user + {stats['child sys']:.2f} ms system, "
              f"{stats['child faults']:.0f} page faults; worker {stats['worker user']:.2f} ms user + "
              f"{stats['worker sys']:.2f} ms system, {stats['worker faults']:.0f} page faults")
    print(f"\n200 tests using one session fixture (a 200,000-entry table), {args.workers} workers:")
    print(f"  process                               {wall['session-process']:7.2f} s")
    print(f"  forked (fixture built in every child) {wall['session-forked']:7.2f} s")
    print(f"  forked --executor-fork-shared=table   {wall['session-shared']:7.2f} s")
    print(f"\n40 tests, every 4th segfaults, {args.workers} workers: same outcomes (30 passed, 10 failed)")
    print(f"  subprocess {wall['crash-subprocess']:7.2f} s")
    print(f"  forked     {wall['crash-forked']:7.2f} s")
    print(f"  forked / subprocess: {crash_ratio:.3f}x (target < 0.1x: {verdict(crash_ratio < 0.1)})")
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
