"""How fast two processes could run a suite of small tests at best, with none of the plugin involved (issue 14).

Issue 14 asks the ``process`` backend with 2 workers on 2 cores for at most
0.8x the wall time of serial pytest on suites of many small tests.  This
script measures what any split of such a suite over two pytest processes costs
at the very least, with plain pytest (``-p no:executor``), no messaging, and
nobody merging the reports, beside serial pytest and a real ``process`` run:

* ``serial`` — plain ``pytest`` over the whole suite;
* ``halves`` — two plain ``pytest`` processes at once, each given half of the
  test modules as arguments: each collects and runs only its half.  The floor
  of *any* two-process design, including one whose controller does not
  collect (pytest-xdist's) and whose workers split the collection;
* ``halves, both collect all`` — the same two processes, but each collects the
  whole suite and deselects the other half: the floor of workers that "run a
  pytest session over the same arguments and collecting the same ids"
  (DESIGN.md, the ``process`` backend);
* ``design floor`` — those two plus a third process that only collects the
  suite (``--collect-only``), as the controller must to plan the run: the
  DESIGN's three collections, with no per-test cost beyond plain pytest's and
  no report replayed;
* ``process`` — ``--executor-backend=process --executor-workers=2``.

After the timed runs, one more serial run measures (thread CPU, per test)
what serial pytest spends in the two things a controller that shows pytest's
own output must do too: collect the suite, and call the report hooks
(``pytest_runtest_logstart``, ``logreport``, ``logfinish``).

Modes run round-robin; the medians are printed with their ratio to serial,
and the time from the start to the first test report: the first of any of
the processes for the floors, the controller's for ``process`` (a probe
``conftest.py``).  The halves' outcome counts, added up, must equal serial's
(checked).

Usage::

    python benchmarks/bench_split_floor.py [--repeat 5] [--suites trivial2k,realistic,trivial20k]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _pytest_run import as_in_a_users_shell, names_option, summary_counts
from _suites import PROBE_ENV, write_probe, write_realistic_suite, write_trivial_suite

_PLAIN = ["-p", "no:executor", "-p", "no:cacheprovider"]
_HALF_ENV = "BENCH_HALF"
_HALF_PLUGIN = "_bench_half_of_modules"
_HALF_PLUGIN_SOURCE = f'''
"""Keep the items of every other test module (by sorted path), starting at ${_HALF_ENV}."""
import os


def pytest_collection_modifyitems(config, items):
    start = int(os.environ["{_HALF_ENV}"])
    modules = sorted({{item.nodeid.split("::")[0] for item in items}})
    kept = set(modules[start::2])
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid.split("::")[0] not in kept])
    items[:] = [item for item in items if item.nodeid.split("::")[0] in kept]
'''
_COSTS_PLUGIN = "_bench_controller_floor"
_COSTS_PLUGIN_SOURCE = '''
"""Serial pytest's CPU per test in what a controller must do too: collect, and call the report hooks."""
import time

import pytest

_spent = {"collect": 0.0, "report": 0.0, "tests": 0}


def _timed(kind):
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def wrapper(*args, **kwargs):
        start = time.thread_time()
        try:
            return (yield)
        finally:
            _spent[kind] += time.thread_time() - start
    return wrapper


pytest_collection = _timed("collect")
pytest_runtest_logstart = _timed("report")
pytest_runtest_logreport = _timed("report")
pytest_runtest_logfinish = _timed("report")


def pytest_runtest_protocol(item):
    _spent["tests"] += 1


def pytest_unconfigure(config):
    tests = max(1, _spent["tests"])
    print(f"CONTROLLER-FLOOR collect={_spent['collect'] * 1000 / tests:.4f} report={_spent['report'] * 1000 / tests:.4f}")
'''
_NOT_TESTS = ("warning", "deselected")
"""Summary counts that are not test outcomes (the halves deselect each other's modules)."""
MODES = ("serial", "halves", "halves, both collect all", "design floor", "process")
SUITES = ("trivial2k", "realistic", "trivial20k")


def commands(mode: str, suite: Path) -> list[tuple[list[str], dict[str, str]]]:
    """The pytest commands (arguments after ``pytest -q``, extra environment) that ``mode`` runs at once."""
    modules = sorted(str(path.relative_to(suite)) for path in suite.glob("test_*.py"))
    if mode == "serial":
        return [(_PLAIN, {})]
    if mode == "halves":
        return [([*_PLAIN, *modules[start::2]], {}) for start in (0, 1)]
    halves = [([*_PLAIN, "-p", _HALF_PLUGIN], {_HALF_ENV: str(start)}) for start in (0, 1)]
    if mode == "halves, both collect all":
        return halves
    if mode == "design floor":
        return [*halves, ([*_PLAIN, "--collect-only"], {})]
    if mode == "process":
        return [(["--executor-backend=process", "--executor-workers=2", "--executor-table=none"], {})]
    raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")


def with_helpers(helpers: Path) -> str:
    """``PYTHONPATH`` with the folder of this script's helper plugins first."""
    return os.pathsep.join(filter(None, [str(helpers), os.environ.get("PYTHONPATH")]))


def run_at_once(suite: Path, runs: list[tuple[list[str], dict[str, str]]],
                helpers: Path) -> tuple[float, float, Counter[str]]:
    """Start every command together in ``suite``.

    Returns the wall seconds until the last ends, the seconds until the first
    test report (see the module's doc), and their outcomes added up.
    """
    pythonpath = with_helpers(helpers)
    probes = helpers / "probes"
    probes.mkdir(exist_ok=True)
    started = time.time()
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "pytest", "-q", *args], cwd=suite, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": pythonpath, PROBE_ENV: str(probes), **env})
             for args, env in runs]
    outputs = [proc.communicate() for proc in procs]
    wall = time.perf_counter() - start
    first = first_report(probes, [proc.pid for proc in procs]) - started
    counts: Counter[str] = Counter()
    for proc, (args, _), (out, err) in zip(procs, runs, outputs):
        if proc.returncode not in (0, 1):
            sys.exit(f"pytest {' '.join(args)} failed ({proc.returncode}) in {suite}:\n{out[-3000:]}\n{err[-3000:]}")
        if "--collect-only" not in args:
            counts.update({kind: n for kind, n in summary_counts(out, err).items() if kind not in _NOT_TESTS})
    return wall, first, counts


def first_report(probes: Path, pids: list[int]) -> float:
    """The earliest first report the probes of ``pids`` wrote (other processes' files are dropped unread)."""
    times = []
    for path in probes.glob("probe-*.json"):
        if int(path.stem.split("-")[1]) in pids:
            first = json.loads(path.read_text())["first_report"]
            if first is not None:
                times.append(first)
        path.unlink()
    if not times:
        sys.exit(f"no process of {pids} wrote a first report in {probes}")
    return min(times)


def measure(suite: Path, repeat: int, helpers: Path) -> dict[str, tuple[float, float]]:
    """Median wall and first report of each mode over ``repeat`` round-robin rounds (after one untimed round).

    The outcomes of every run are checked against serial's.
    """
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    firsts: dict[str, list[float]] = {mode: [] for mode in MODES}
    expected: Counter[str] | None = None
    for round_ in range(repeat + 1):
        for mode in MODES:
            wall, first, counts = run_at_once(suite, commands(mode, suite), helpers)
            expected = expected or counts
            if counts != expected:
                sys.exit(f"{suite.name}: {mode} reported {dict(counts)}, serial {dict(expected)}")
            if round_:  # the first round writes the bytecode caches and warms the file cache
                walls[mode].append(wall)
                firsts[mode].append(first)
    return {mode: (statistics.median(walls[mode]), statistics.median(firsts[mode])) for mode in MODES}


def controller_floor(suite: Path, helpers: Path) -> tuple[float, float]:
    """Milliseconds of CPU per test serial pytest spends collecting, and in the report hooks (one untimed run)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", *_PLAIN, "-p", _COSTS_PLUGIN], cwd=suite, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": with_helpers(helpers)})
    found = re.search(r"CONTROLLER-FLOOR collect=([\d.]+) report=([\d.]+)", proc.stdout)
    if found is None:
        sys.exit(f"no CONTROLLER-FLOOR line from the serial run in {suite}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return float(found.group(1)), float(found.group(2))


def main() -> None:
    """Parse the options, build the suites, print one table per suite."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="round-robin rounds (median kept)")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"some of {', '.join(SUITES)}")
    args = parser.parse_args()
    suites = names_option(args.suites, SUITES, "--suites", parser)
    as_in_a_users_shell()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"median of {args.repeat} round-robin runs")
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        root = Path(tmp)
        helpers = root / "helpers"
        helpers.mkdir()
        (helpers / f"{_HALF_PLUGIN}.py").write_text(_HALF_PLUGIN_SOURCE)
        (helpers / f"{_COSTS_PLUGIN}.py").write_text(_COSTS_PLUGIN_SOURCE)
        for name in suites:
            suite = root / name
            if name == "realistic":
                write_realistic_suite(suite)
            else:
                write_trivial_suite(suite, 2000 if name == "trivial2k" else 20000)
            write_probe(suite)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            medians = measure(suite, args.repeat, helpers)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(f"\n{name} (all runs used {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.0f}"
                  " CPU-s)")
            print(f"  {'mode':<26} {'wall s':>7} {'/serial':>8} {'first s':>8}")
            serial = medians["serial"][0]
            for mode, (wall, first) in medians.items():
                print(f"  {mode:<26} {wall:>7.2f} {wall / serial:>7.2f}x {first:>8.2f}")
            collect, report = controller_floor(suite, helpers)
            print(f"  serial pytest's CPU per test that a controller pays too: collection {collect:.3f} ms, "
                  f"report hooks (logstart, logreport, logfinish) {report:.3f} ms")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
