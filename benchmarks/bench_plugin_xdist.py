"""Parallel backends of the plugin side by side with pytest-xdist, in one run.

Generates three suites in a temporary directory and times, for each, the wall
clock of a whole ``pytest`` run (start-up and collection included):

* ``sleepy``  — 200 tests sleeping 20 ms each (10 modules);
* ``cpu``     — 40 CPU-bound tests of ~0.1 s each (4 modules);
* ``trivial`` — 2000 tests that do nothing (20 modules).

Runners: plain serial pytest (reference), ``pytest -n 2`` (pytest-xdist; both
with ``-p no:executor`` so the peers run without this plugin) and
``pytest --executor-backend=process --executor-workers=2``; with ``--dask``
also ``--executor-backend=dask`` on a 2-worker LocalCluster started per run.
Each command runs ``--repeat`` times (default 3) and the median is kept; the
ratio column is the executor's median over xdist's.  Targets (DESIGN.md §4,
issue 5): process ≤ 0.9× xdist on sleepy and cpu, ≤ 1.0× on trivial.

Usage::

    python benchmarks/bench_plugin_xdist.py [--repeat 3] [--suites sleepy,cpu,trivial] [--dask]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _pytest_run import timed_pytest
from _suites import write_trivial_suite

SUITES = ("sleepy", "cpu", "trivial")


def _calibrate_loop(seconds: float) -> int:
    """Iterations of the CPU loop used by the ``cpu`` suite that take about ``seconds``."""
    n = 200_000
    while True:
        start = time.perf_counter()
        total = 0
        for i in range(n):
            total += i * i
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            return int(n * seconds / elapsed)
        n *= 2


def write_suite(root: Path, name: str) -> Path:
    """Create suite ``name`` under ``root`` and return its directory."""
    suite = root / name
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    if name == "sleepy":
        body = "import time\n\n" + "".join(f"def test_sleep_{i}():\n    time.sleep(0.02)\n\n\n" for i in range(20))
        modules = 10
    elif name == "cpu":
        loops = _calibrate_loop(0.1)
        body = "".join(
            f"def test_cpu_{i}():\n    total = 0\n    for n in range({loops}):\n        total += n * n\n    assert total\n\n\n"
            for i in range(10)
        )
        modules = 4
    else:
        write_trivial_suite(suite, 2000)
        return suite
    for module in range(modules):
        (suite / f"test_{name}_{module}.py").write_text(body)
    return suite


def commands(with_dask: bool) -> dict[str, list[str]]:
    """The pytest command lines to compare (after ``python -m pytest -q -p no:cacheprovider``)."""
    runs = {
        # The peers run without this plugin at all: plain pytest and plain pytest-xdist.
        "serial": ["-p", "no:executor"],
        "xdist -n 2": ["-p", "no:executor", "-n", "2"],
        "process x2": ["--executor-backend=process", "--executor-workers=2", "--executor-table=none"],
    }
    if with_dask:
        runs["dask x2"] = ["--executor-backend=dask", "--executor-workers=2", "--executor-table=none"]
    return runs


def main() -> None:
    """Run the comparison and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--dask", action="store_true", help="also time --executor-backend=dask")
    args = parser.parse_args()
    suites = [s for s in args.suites.split(",") if s]
    for suite in suites:
        if suite not in SUITES:
            parser.error(f"--suites: unknown suite {suite!r}; known: {', '.join(SUITES)}")
    runs = commands(args.dask)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeat} runs (wall seconds)")
    header = f"{'suite':<8} " + " ".join(f"{name:>12}" for name in runs) + "   executor/xdist"
    print(header)
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as tmp:
        for name in suites:
            suite = write_suite(Path(tmp), name)
            times: dict[str, list[float]] = {label: [] for label in runs}
            for _ in range(args.repeat):
                # Round-robin: a load spike on a shared machine hits every runner alike.
                for label, extra in runs.items():
                    times[label].append(timed_pytest(suite, extra)[0])
            medians = {label: statistics.median(values) for label, values in times.items()}
            ratios = ", ".join(
                f"{label.split()[0]} {medians[label] / medians['xdist -n 2']:.2f}x"
                for label in runs
                if label not in ("serial", "xdist -n 2")
            )
            print(f"{name:<8} " + " ".join(f"{medians[label]:>12.2f}" for label in runs) + f"   {ratios}")


if __name__ == "__main__":
    main()
