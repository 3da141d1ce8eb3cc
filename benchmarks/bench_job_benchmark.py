"""Does a job_benchmark measured on the process backend agree with a serial run?

Writes a small suite to a temporary directory: a few benchmarks (CPU-bound and
sleep-bound, using the ``job_benchmark`` fixture itself) among CPU-hungry
ordinary tests.  Runs it, interleaved and repeated:

* ``serial``: plain pytest, one test after the other;
* ``process``: ``--executor-backend=process --executor-workers=2`` — the other
  tests run in parallel, the benchmarks run exclusively (the default);
* ``shared`` (with ``--shared``): the same, but the benchmarks opt out with
  ``job(exclusive=False)``, to show what exclusivity buys.

Prints the median of every benchmark per mode (median over the repeats of the
per-run medians) and the ratio process/serial; the target is within 10 %.

    .venv/bin/python benchmarks/bench_job_benchmark.py [--repeat 3] [--shared]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from _pytest_run import timed_pytest

SUITE = '''
import time
import pytest

EXCLUSIVE = {exclusive}


def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def sort_copy(data):
    return sorted(data)


DATA = [(i * 7919) % 10007 for i in range(20000)]
bench = pytest.mark.job(exclusive=False) if not EXCLUSIVE else (lambda f: f)


@bench
def test_bench_spin(job_benchmark):
    job_benchmark(spin, 20000)


@bench
def test_bench_sort(job_benchmark):
    job_benchmark(sort_copy, DATA)


@bench
def test_bench_sleep(job_benchmark):
    job_benchmark(time.sleep, 0.002)


@pytest.mark.parametrize("n", range({noise}))
def test_noise(n):
    # CPU-hungry neighbours: they compete with a non-exclusive benchmark for the cores.
    deadline = time.perf_counter() + 0.15
    while time.perf_counter() < deadline:
        spin(2000)
'''

MODES = {
    "serial": [],
    "process": ["--executor-backend=process", "--executor-workers=2"],
    "shared": ["--executor-backend=process", "--executor-workers=2"],
}


def write_suite(directory: Path, exclusive: bool, noise: int) -> None:
    """Write the suite (and an empty ini so the rootdir is ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_suite.py").write_text(textwrap.dedent(SUITE.format(exclusive=exclusive, noise=noise)))


def run_mode(directory: Path, mode: str, run: int, max_time: float) -> tuple[dict[str, float], float]:
    """Run the suite once; return ``{benchmark: median seconds}`` and the wall time."""
    name = f"{mode}-{run}"
    wall, _ = timed_pytest(directory, [
        *MODES[mode], f"--executor-benchmark-save={name}", f"--executor-benchmark-max-time={max_time}",
    ])
    document = json.loads((directory / ".benchmarks" / f"{name}.json").read_text())
    medians = {record["name"].split("::")[-1]: record["stats"]["median"] for record in document["benchmarks"]}
    return medians, wall


def main() -> None:
    """Run every mode ``--repeat`` times, interleaved, and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (interleaved)")
    parser.add_argument("--noise", type=int, default=12, help="CPU-bound ordinary tests in the suite")
    parser.add_argument("--max-time", type=float, default=0.3, help="seconds of rounds per benchmark")
    parser.add_argument("--shared", action="store_true", help="also run with non-exclusive benchmarks")
    args = parser.parse_args()
    modes = ["serial", "process"] + (["shared"] if args.shared else [])
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="bench_job_benchmark.") as temp:
        exclusive_dir, shared_dir = Path(temp) / "exclusive", Path(temp) / "shared"
        write_suite(exclusive_dir, exclusive=True, noise=args.noise)
        write_suite(shared_dir, exclusive=False, noise=args.noise)
        for run in range(args.repeat):
            for mode in modes:
                directory = shared_dir if mode == "shared" else exclusive_dir
                medians, wall = run_mode(directory, mode, run, args.max_time)
                results[mode].append(medians)
                walls[mode].append(wall)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} runs per mode, "
          f"{args.noise} CPU-bound neighbour tests")
    names = sorted(results["serial"][0])
    header = f"{'benchmark':<20}" + "".join(f"{mode + ' median':>18}" for mode in modes)
    header += "".join(f"{mode + '/serial':>18}" for mode in modes[1:])
    print(header)
    worst = 0.0
    for name in names:
        median = {mode: statistics.median(r[name] for r in results[mode]) for mode in modes}
        line = f"{name:<20}" + "".join(f"{median[mode] * 1e6:>15.1f} us" for mode in modes)
        for mode in modes[1:]:
            ratio = median[mode] / median["serial"]
            line += f"{ratio:>18.3f}"
            if mode == "process":
                worst = max(worst, abs(ratio - 1))
        print(line)
    print("wall per run: " + ", ".join(f"{mode} {statistics.median(walls[mode]):.2f} s" for mode in modes))
    verdict = "OK" if worst <= 0.10 else "NOT MET"
    print(f"process vs serial: largest median difference {worst * 100:.1f}% (target <= 10%): {verdict}")


if __name__ == "__main__":
    main()
