"""Benchmark (not a test): the plugin's cost under ``pytest -n 2`` on a suite without markers.

Run from the project root with the dev virtualenv::

    .venv/bin/python benchmarks/bench_plugin_xdist_inert.py [--repeat N] [--tests N] [--workers N]

It writes a suite of trivial tests (no ``job`` markers, no executor options)
to a temporary directory and times, in alternation so that machine noise hits
both alike, whole ``pytest -n 2`` runs:

* ``plugin``:    the plugin installed (it plugs into xdist's scheduler hook and
  hands the run to xdist's own scheduler once it sees there is nothing to plan);
* ``no plugin``: the same with ``-p no:executor``.

It prints the median wall time of each, the ratio (target: <= 1.05, DESIGN
issue 7), and the minimum of each as a less noise-prone second opinion.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _pytest_run import timed_pytest

TARGET = 1.05
MODULES = 20


def write_suite(root: Path, tests: int) -> None:
    """``tests`` trivial tests spread over :data:`MODULES` modules (some parametrised)."""
    per_module = max(1, tests // MODULES)
    for number in range(MODULES):
        half = per_module // 2
        lines = [
            "import pytest",
            "",
            "",
            f"@pytest.mark.parametrize('n', range({half}))",
            "def test_param(n):",
            "    assert n >= 0",
            "",
        ]
        for index in range(per_module - half):
            lines += ["", f"def test_plain_{index}():", f"    assert {index} + 1 > {index}", ""]
        (root / f"test_mod_{number:02d}.py").write_text("\n".join(lines))
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")


def main() -> None:
    """Parse arguments, run both variants alternately, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="runs of each variant (default 9)")
    parser.add_argument("--tests", type=int, default=2000, help="tests in the suite (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers, -n (default 2)")
    args = parser.parse_args()
    variants = {"plugin": [], "no plugin": ["-p", "no:executor"]}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-xdist-inert-") as directory:
        root = Path(directory)
        write_suite(root, args.tests)
        for extra in variants.values():  # warm-up: imports, .pyc files
            timed_pytest(root, ["-n", str(args.workers), *extra])[0]
        for repetition in range(args.repeat):
            order = list(variants.items())
            if repetition % 2:
                order.reverse()
            for name, extra in order:
                times[name].append(timed_pytest(root, ["-n", str(args.workers), *extra])[0])
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    minima = {name: min(samples) for name, samples in times.items()}
    print(f"pytest -n {args.workers}, {args.tests} tests without markers, {args.repeat} runs each")
    for name in variants:
        print(f"  {name:<10} median {medians[name]:.3f} s   min {minima[name]:.3f} s")
    ratio = medians["plugin"] / medians["no plugin"]
    ratio_min = minima["plugin"] / minima["no plugin"]
    verdict = "OK" if ratio <= TARGET else "ABOVE TARGET"
    print(f"  ratio plugin / no plugin: median {ratio:.3f}  min {ratio_min:.3f}  (target <= {TARGET}) {verdict}")


if __name__ == "__main__":
    main()
