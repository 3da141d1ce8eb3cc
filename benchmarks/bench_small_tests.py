"""Suites of many small tests: serial pytest, xdist and the plugin's backends side by side.

Generates, in a private temporary directory, the suites of issue 14 and times a
whole ``pytest`` run of each (start-up and collection included):

* ``trivial2k`` / ``trivial20k`` — 2,000 / 20,000 tests that do nothing;
* ``realistic`` — about 3,000 tests in 30 modules shaped like a real project
  (parametrised functions and classes, session/module/function fixtures,
  output, warnings, ``tmp_path``, 3 failures, skips, xfails);
* ``realistic-junit`` / ``realistic-v`` — the same with ``--junitxml`` / ``-v``.

Modes: ``serial`` (plain pytest, ``-p no:executor``), ``xdist`` (``-n 2``, also
without the plugin), ``process`` and ``dask`` (``--executor-backend=... --executor-workers=2``).
Runs are round-robin (every mode once per repeat) and medians are kept.  Every
mode must report the same outcome counts as serial, or the script stops.

Printed per suite and mode: median wall, ratio to serial and to xdist, time from
process start to the first test report in the controller, and the controller
process's own CPU (user + system, workers excluded) per test, and the CPU of the
whole run (controller and the processes it waited for).  The last two come
from a probe ``conftest.py`` in each suite that writes one file per process.
Targets (issue 14): process ≤ 0.8× serial, dask ≤ 1.2× process, controller CPU
≤ 0.1 ms/test, first result ≤ 1.0 s on 2,000 tests.

Every run gets the environment of a user's shell: ``PYTHONDONTWRITEBYTECODE``
and ``PYTHONUNBUFFERED`` are dropped (``--keep-env`` keeps them), so the suites'
bytecode is cached as usual; one untimed run of every mode comes first.

Usage::

    python benchmarks/bench_small_tests.py [--repeat 3] [--suites trivial2k,realistic]
        [--modes serial,xdist,process,dask] [--trivial-sizes 2000,20000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from _pytest_run import PytestRun, as_in_a_users_shell, names_option, run_pytest, summary_counts
from _suites import PROBE_ENV, write_probe, write_realistic_suite, write_trivial_suite

MODES: dict[str, list[str]] = {
    # The peers run without this plugin at all: plain pytest and plain pytest-xdist.
    "serial": ["-p", "no:executor"],
    "xdist": ["-p", "no:executor", "-n", "2"],
    "process": ["--executor-backend=process", "--executor-workers=2", "--executor-table=none"],
    "dask": ["--executor-backend=dask", "--executor-workers=2", "--executor-table=none"],
}
SUITES = ("trivial2k", "trivial20k", "realistic", "realistic-junit", "realistic-v")


@dataclass
class Sample:
    """Median inputs of one (suite, mode) pair."""

    walls: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    total_cpu: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


def read_probe(probe_dir: Path, run: PytestRun) -> tuple[float, float]:
    """Seconds from start to the controller's first report, and the controller's own CPU seconds."""
    path = probe_dir / f"probe-{run.pid}.json"
    if not path.exists():
        sys.exit(f"the probe wrote nothing for controller pid {run.pid} in {probe_dir}")
    record = json.loads(path.read_text())
    for stale in probe_dir.glob("probe-*.json"):
        stale.unlink()
    first = record["first_report"]
    return (first - run.started if first is not None else float("nan")), record["cpu"]


def build_suites(root: Path, names: list[str], sizes: dict[str, int]) -> dict[str, tuple[Path, list[str]]]:
    """Write the requested suites; map each name to its directory and extra pytest arguments."""
    built: dict[str, tuple[Path, list[str]]] = {}
    realistic = root / "realistic"
    for name in names:
        if name.startswith("trivial"):
            directory = root / name
            write_trivial_suite(directory, sizes[name])
            write_probe(directory)
            built[name] = (directory, [])
            continue
        if not realistic.exists():
            write_realistic_suite(realistic)
            write_probe(realistic)
        extra = {"realistic": [], "realistic-v": ["-v"],
                 "realistic-junit": [f"--junitxml={root / 'junit.xml'}"]}[name]
        built[name] = (realistic, extra)
    return built


def measure(directory: Path, extra: list[str], modes: list[str], repeat: int, probe_dir: Path) -> dict[str, Sample]:
    """Round-robin ``repeat`` times over ``modes`` on one suite."""
    samples = {mode: Sample() for mode in modes}
    env = {PROBE_ENV: str(probe_dir)}
    for mode in modes:  # untimed: the suite's bytecode cache is written, the file cache is warm
        read_probe(probe_dir, run_pytest(directory, [*MODES[mode], *extra], env=env, ok_codes=(0, 1)))
    for _ in range(repeat):
        for mode in modes:
            run = run_pytest(directory, [*MODES[mode], *extra], env=env, ok_codes=(0, 1))
            first, cpu = read_probe(probe_dir, run)
            sample = samples[mode]
            sample.walls.append(run.wall)
            sample.first.append(first)
            sample.cpu.append(cpu)
            sample.total_cpu.append(run.cpu)
            counts = summary_counts(run.stdout, run.stderr)
            if sample.outcomes and counts != sample.outcomes:
                sys.exit(f"{mode}: outcomes changed between repeats: {sample.outcomes} then {counts}")
            sample.outcomes = counts
    return samples


def check_outcomes(suite: str, samples: dict[str, Sample]) -> None:
    """Stop loudly unless every mode reported the same test outcomes (warnings count aside)."""
    def outcomes(sample: Sample) -> dict[str, int]:
        return {k: v for k, v in sample.outcomes.items() if k != "warning"}
    reference_mode = next(iter(samples))
    reference = outcomes(samples[reference_mode])
    for mode, sample in samples.items():
        if outcomes(sample) != reference:
            sys.exit(f"{suite}: {mode} reported {sample.outcomes}, {reference_mode} {samples[reference_mode].outcomes}")


def report(suite: str, samples: dict[str, Sample]) -> None:
    """Print one block of rows for a suite."""
    some = next(iter(samples.values())).outcomes
    tests = sum(v for k, v in some.items() if k not in ("warning", "deselected"))
    print(f"\n{suite}: {', '.join(f'{v} {k}' for k, v in some.items())}")
    print(f"  {'mode':<8} {'wall s':>7} {'/serial':>8} {'/xdist':>7} {'first s':>8} {'ctl ms/test':>12} {'all cpu s':>10}")
    medians = {mode: statistics.median(s.walls) for mode, s in samples.items()}
    for mode, sample in samples.items():
        vs_serial = f"{medians[mode] / medians['serial']:.2f}x" if "serial" in medians else "-"
        vs_xdist = f"{medians[mode] / medians['xdist']:.2f}x" if "xdist" in medians else "-"
        cpu_ms = statistics.median(sample.cpu) / tests * 1000
        print(f"  {mode:<8} {medians[mode]:>7.2f} {vs_serial:>8} {vs_xdist:>7} "
              f"{statistics.median(sample.first):>8.2f} {cpu_ms:>12.3f} {statistics.median(sample.total_cpu):>10.2f}")
    if "process" in medians and "dask" in medians:
        print(f"  dask/process {medians['dask'] / medians['process']:.2f}x")


def main() -> None:
    """Parse the options, run every requested suite and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="round-robin repeats (median kept)")
    parser.add_argument("--repeat-large", type=int, default=1, help="repeats for trivial20k")
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--trivial-sizes", default="2000,20000", help="sizes of trivial2k,trivial20k")
    parser.add_argument("--keep-env", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE and PYTHONUNBUFFERED for the timed runs")
    args = parser.parse_args()
    if not args.keep_env:
        as_in_a_users_shell()
    suites = names_option(args.suites, SUITES, "--suites", parser)
    modes = names_option(args.modes, list(MODES), "--modes", parser)
    small, large = (int(n) for n in args.trivial_sizes.split(","))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeat} round-robin runs"
          f" ({args.repeat_large} for trivial20k)")
    with tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        root = Path(tmp)
        probe_dir = root / "probe"
        probe_dir.mkdir()
        built = build_suites(root, suites, {"trivial2k": small, "trivial20k": large})
        for name, (directory, extra) in built.items():
            repeat = args.repeat_large if name == "trivial20k" else args.repeat
            samples = measure(directory, extra, modes, repeat, probe_dir)
            check_outcomes(name, samples)
            report(name, samples)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
