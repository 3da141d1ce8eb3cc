"""Overhead of the plugin on 2000 trivial tests: inert, and with the local backend.

Runs, side by side and alternating (to share the machine's noise), plain
pytest with the plugin disabled (``-p no:executor``), pytest with the plugin
installed but inert (no option, no marker), and ``--executor-backend=local``.
Prints the median wall and CPU time of each and its ratio to plain pytest;
the target is <= 1.2x for both variants.

    python benchmarks/bench_plugin_inert.py [--tests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _pytest_run import timed_pytest
from _suites import write_trivial_suite

VARIANTS = {
    "plain (-p no:executor)": ["-p", "no:executor"],
    "plugin inert": [],
    "plugin --executor-backend=local": ["--executor-backend=local", "--executor-table=none"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_trivial_suite(directory, args.tests)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for name, extra in VARIANTS.items():  # warm-up: imports, .pyc files
            timed_pytest(directory, extra)
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                times[name].append(timed_pytest(directory, extra))
    plain = times["plain (-p no:executor)"]
    base_wall = statistics.median(wall for wall, _ in plain)
    base_cpu = statistics.median(cpu for _, cpu in plain)
    print(f"{args.tests} trivial tests, median of {args.rounds} alternating rounds")
    print(f"  {'variant':<34} {'wall':>8} {'ratio':>6}   {'cpu':>8} {'ratio':>6}")
    for name, samples in times.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        print(f"  {name:<34} {wall:7.2f}s {wall / base_wall:5.2f}x   {cpu:7.2f}s {cpu / base_cpu:5.2f}x")
    print("  (CPU time is the steadier measure on a shared machine; target <= 1.2x)")


if __name__ == "__main__":
    main()
