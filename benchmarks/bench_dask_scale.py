"""How the dask backend scales: 400 tests of 50 ms sleep on LocalClusters of 1, 2, 4, 8 and 16 workers.

Each run is ``pytest --executor-backend=dask --executor-workers=N`` (the
plugin starts a LocalCluster of N single-threaded workers for the run) on a
generated suite.  Printed per N:

* ``end-to-end``: the whole ``pytest`` process, cluster start and stop included;
* ``tests``: from the first test's start to the last test's end (from
  ``--executor-report``), the part that more workers can shorten;
* each against the ideal ``400 × 50 ms / N`` and as a speed-up over N = 1.

The target (DESIGN.md §4) is 16 workers at least 6× faster than 1.  On a
machine with fewer cores than workers, session start-up (one pytest process
per worker, collecting the suite) competes with the tests for the CPU.

    python benchmarks/bench_dask_scale.py [--tests 400] [--sleep 0.05] [--workers 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _pytest_run import run_pytest

SUITE = """
import time

import pytest


@pytest.mark.parametrize("n", range({tests}))
def test_sleepy(n):
    time.sleep({sleep})
"""

INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:benchmark -p no:dependency
          -p no:pytest_order -p no:rerunfailures -p no:randomly
"""


def _test_span(report: Path) -> float:
    jobs = json.loads(report.read_text())["jobs"]
    starts = [job["start"] for job in jobs if job.get("start")]
    stops = [job["stop"] for job in jobs if job.get("stop")]
    return max(stops) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=400)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--workers", default="1,2,4,8,16")
    options = parser.parse_args()
    counts = [int(part) for part in options.workers.split(",")]
    work = options.tests * options.sleep
    print(f"{options.tests} tests x {options.sleep * 1000:g} ms = {work:.1f} s of sleep, dask LocalCluster per run")
    print(f"{'workers':>7} {'end-to-end':>11} {'ideal':>7} {'tests':>7} {'ideal':>7} {'e2e x':>6} {'tests x':>7}")
    with tempfile.TemporaryDirectory(prefix="bench-dask-scale-") as folder:
        root = Path(folder)
        (root / "pytest.ini").write_text(INI)
        (root / "test_sleepy.py").write_text(SUITE.format(tests=options.tests, sleep=options.sleep))
        base: tuple[float, float] | None = None
        for count in counts:
            report = root / f"report-{count}.json"
            run = run_pytest(root, ["--executor-backend=dask", f"--executor-workers={count}", "--executor-workers-max=64",
                                    "--executor-table=none", f"--executor-report={report}"])
            span = _test_span(report)
            base = base or (run.wall, span)
            ideal = work / count
            print(f"{count:>7} {run.wall:>10.2f}s {ideal:>6.2f}s {span:>6.2f}s {ideal:>6.2f}s "
                  f"{base[0] / run.wall:>5.1f}x {base[1] / span:>6.1f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
