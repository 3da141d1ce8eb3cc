"""The floor under a forked test's cost on this machine, with none of the plugin involved (issue 19).

The ``forked`` backend runs each test's protocol in a child forked from a warm
worker.  This script measures what that costs at the very least, with plain
pytest and no plugin of ours (``-p no:executor``): a pytest process collects a
trivial suite, then, in its ``pytest_runtestloop``, runs ``--tests`` of its items
one of three ways, timing them:

* ``in-process`` — ``pytest_runtest_protocol`` in the process itself (what a
  ``process`` worker does per test, before any messaging);
* ``bare fork`` — ``fork()``, the child calls ``os._exit(0)`` at once, the parent
  waits for it: the price of a fork on this kernel, for a process of this size;
* ``fork + protocol`` — the child runs the item's whole protocol (setup, call,
  teardown, ``nextitem=None`` as a forked child does) then ``os._exit(0)``.

``gc.freeze()`` is called before forking, as the backend does.  ``--parallel``
(2) copies run at once, as the backend's two workers do on two cores.  Printed
per test: wall, and the children's and the parent's CPU and page faults
(``getrusage``); then what the floor implies for the issue's targets, beside a
real ``process`` run of the same suite with ``--parallel`` workers.  The
children's faults are mostly copy-on-write faults: each page of the parent a
child writes to is copied, and every object a test touches is written to (its
reference count).  On a virtual machine each fault is a trap to the hypervisor.

Usage::

    python benchmarks/bench_fork_floor.py [--tests 1000] [--parallel 2] [--suite-size 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import fmean

from _pytest_run import as_in_a_users_shell, run_pytest
from _suites import write_trivial_suite

_PLAIN = ["-p", "no:executor", "-p", "no:randomly", "-p", "no:rerunfailures", "-p", "no:cacheprovider"]
MODES = ("in-process", "bare fork", "fork + protocol")

_DRIVER = r'''
import gc, json, os, resource, sys, time
import pytest

MODE, COUNT, OUT, SUITE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def usage(who):
    u = resource.getrusage(who)
    return u.ru_utime, u.ru_stime, u.ru_minflt


class Floor:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        items = session.items[:COUNT]
        gc.freeze()
        self_before, children_before = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        for item in items:
            if MODE == "in-process":
                item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    if MODE == "fork + protocol":
                        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        wall = time.perf_counter() - start
        self_after, children_after = usage(resource.RUSAGE_SELF), usage(resource.RUSAGE_CHILDREN)
        n = len(items)
        record = {"wall": wall / n}
        for who, before, after in (("parent", self_before, self_after), ("child", children_before, children_after)):
            record[who] = [(a - b) / n for a, b in zip(after, before)]
        with open(OUT, "w") as out:
            json.dump(record, out)
        return True


sys.exit(pytest.main([SUITE, "-q", *sys.argv[5:]], plugins=[Floor()]))
'''


def measure(mode: str, suite: Path, tests: int, parallel: int, scratch: Path) -> list[dict[str, object]]:
    """Run ``parallel`` driver processes at once in ``mode``; their records."""
    driver = scratch / "floor_driver.py"
    driver.write_text(_DRIVER)
    outs = [scratch / f"{mode.replace(' ', '_').replace('+', 'p')}-{n}.json" for n in range(parallel)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(driver), mode, str(tests), str(out), str(suite), *_PLAIN],
            cwd=suite, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for out in outs
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"{mode}: the driver failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return [json.loads(out.read_text()) for out in outs]


def main() -> None:
    """Measure the three floors and print them against the issue's targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=1000, help="items each copy runs")
    parser.add_argument("--parallel", type=int, default=2, help="copies at once (the backend's workers)")
    parser.add_argument("--suite-size", type=int, default=2000, help="trivial tests in the suite (as bench_forked)")
    args = parser.parse_args()
    as_in_a_users_shell()  # the driver copies and the process run alike
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-fork-floor-") as tmp:
        suite, scratch = Path(tmp) / "suite", Path(tmp) / "scratch"
        scratch.mkdir()
        write_trivial_suite(suite, max(args.suite_size, args.tests))
        floors: dict[str, float] = {}
        print(f"\n{args.tests} items per copy, {args.parallel} copies at once; per test:")
        print(f"  {'':17} {'wall ms':>8} {'child u/s ms':>14} {'child faults':>13} {'parent u/s ms':>14} {'parent faults':>14}")
        for mode in MODES:
            records = measure(mode, suite, args.tests, args.parallel, scratch)
            wall = fmean([float(r["wall"]) for r in records]) * 1000  # type: ignore[arg-type]
            child = [fmean([r["child"][i] for r in records]) for i in range(3)]  # type: ignore[index]
            parent = [fmean([r["parent"][i] for r in records]) for i in range(3)]  # type: ignore[index]
            floors[mode] = wall
            print(f"  {mode:17} {wall:8.2f} {child[0] * 1000:6.2f}/{child[1] * 1000:<7.2f} {child[2]:13.0f} "
                  f"{parent[0] * 1000:6.2f}/{parent[1] * 1000:<7.2f} {parent[2]:14.0f}")
        process = run_pytest(suite, ["--executor-backend=process", f"--executor-workers={args.parallel}",
                                     "--executor-table=none", "-p", "no:randomly", "-p", "no:rerunfailures"])
        size = max(args.suite_size, args.tests)
        children_alone = size / args.parallel * floors["fork + protocol"] / 1000
        overhead = floors["fork + protocol"] - floors["in-process"]
        print(f"\nA whole process-backend run of the {size} tests, {args.parallel} workers: {process.wall:.2f} s")
        print(f"Forked children alone need at least {children_alone:.2f} s for them "
              f"({size} / {args.parallel} x {floors['fork + protocol']:.2f} ms): "
              f"{children_alone / process.wall:.2f}x that run before any worker start or messaging (target <= 2x)")
        print(f"Fork + protocol over in-process, per test per worker: {overhead:.2f} ms (target <= 5 ms)")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
