"""How the dask backend scales: 400 tests of 50 ms sleep on LocalClusters of 1, 2, 4, 8 and 16 workers.

Each run is ``pytest --executor-backend=dask --executor-workers=N`` (the
plugin starts a LocalCluster of N single-threaded workers for the run) on a
generated suite.  Printed per N, with these definitions:

* ``end-to-end``: the wall time of the whole ``pytest`` process, from its
  start to its exit (interpreter start, cluster start, N sessions starting
  and collecting, the tests, cluster stop);
* ``start``: from the process start to the first test's start (from
  ``--executor-report``): what more workers cannot shorten, and what N
  sessions starting at once on few cores lengthen;
* ``run phase``: from the first test's start to the last test's end, the part
  that more workers can shorten; ``ideal`` is ``tests × sleep / N``;
* ``speed-up``: each of end-to-end and run phase of N = 1 divided by that of N.

The target (DESIGN.md §4) is 16 workers at least 6× faster than 1.  On a
machine with fewer cores than workers, starting the workers and their sessions
(one pytest process each, collecting the suite) competes with the tests for
the CPU: end-to-end, the start is paid once per run whatever N, so the
speed-up of the run phase is what shows the scaling itself.  Report
``uptime``'s load next to the numbers.

``--plain`` adds, per N, the floor without pytest or this plugin: a fresh
Python process that imports ``distributed``, starts a LocalCluster of N
single-threaded workers as the plugin's is (TLS with temporary credentials, on
127.0.0.1, no dashboard; dask's defaults otherwise: a nanny per worker),
``client.map``s the same sleeps, gathers them and closes the cluster.

    python benchmarks/bench_dask_scale.py [--tests 400] [--sleep 0.05] [--workers 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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


PLAIN_DASK = """
import sys
import time

from distributed import Client, LocalCluster
from distributed.security import Security


def nap(seconds):
    time.sleep(seconds)


if __name__ == "__main__":
    workers, tests, sleep = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    security = Security.temporary()
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", protocol="tls://",
                      security=security, dashboard_address=None) as cluster, Client(cluster, security=security) as client:
        client.gather(client.map(nap, [sleep] * tests, pure=False))
"""


def plain_dask_wall(root: Path, workers: int, tests: int, sleep: float) -> float:
    """End-to-end seconds of :data:`PLAIN_DASK` on ``workers`` workers (see the module docstring)."""
    script = root / "plain_dask.py"
    script.write_text(PLAIN_DASK)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(workers), str(tests), str(sleep)], cwd=root, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _phases(report: Path, started: float) -> tuple[float, float]:
    """``(start, run phase)`` of a run (see the module docstring) from its JSON report."""
    jobs = json.loads(report.read_text())["jobs"]
    first = min(job["start"] for job in jobs if job.get("start"))
    last = max(job["stop"] for job in jobs if job.get("stop"))
    return first - started, last - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=400)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--plain", action="store_true", help="also time plain dask's client.map (see above)")
    options = parser.parse_args()
    counts = [int(part) for part in options.workers.split(",")]
    work = options.tests * options.sleep
    print(f"{options.tests} tests x {options.sleep * 1000:g} ms = {work:.1f} s of sleep, a dask LocalCluster per run, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("end-to-end = process start to exit; start = process start to first test start; "
          "run phase = first test start to last test end (ideal = sleep / workers)")
    print(f"{'workers':>7} {'end-to-end':>11} {'start':>7} {'run phase':>10} {'ideal':>7} "
          f"{'speed-up e2e':>13} {'speed-up run':>13}" + (f" {'plain dask':>11} {'speed-up':>9}" if options.plain else ""))
    with tempfile.TemporaryDirectory(prefix="bench-dask-scale-") as folder:
        root = Path(folder)
        (root / "pytest.ini").write_text(INI)
        (root / "test_sleepy.py").write_text(SUITE.format(tests=options.tests, sleep=options.sleep))
        base: tuple[float, float] | None = None
        plain_base: float | None = None
        for count in counts:
            report = root / f"report-{count}.json"
            run = run_pytest(root, ["--executor-backend=dask", f"--executor-workers={count}", "--executor-workers-max=64",
                                    "--executor-table=none", f"--executor-report={report}"])
            start, span = _phases(report, run.started)
            base = base or (run.wall, span)
            plain = ""
            if options.plain:
                wall = plain_dask_wall(root, count, options.tests, options.sleep)
                plain_base = plain_base or wall
                plain = f" {wall:>10.2f}s {plain_base / wall:>8.1f}x"
            print(f"{count:>7} {run.wall:>10.2f}s {start:>6.2f}s {span:>9.2f}s {work / count:>6.2f}s "
                  f"{base[0] / run.wall:>12.1f}x {base[1] / span:>12.1f}x{plain}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
