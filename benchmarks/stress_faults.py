"""Stress: random faults on a mixed suite, across the process and dask backends and ``-n 2``.

Not a timed test: run it by hand, e.g. ``python benchmarks/stress_faults.py --rounds 200``.
Each round picks a mode (``process``, ``dask``, ``xdist``) and a fault, runs a
suite of independent tests, ``after=`` chains and an exclusive test plus one
faulty test, and checks three things:

* the run ends within ``--bound`` seconds (else it counts as a hang and is killed);
* every test gets exactly one final report (JUnit XML; after Ctrl-C, at most one);
* nothing is left: no process carrying the round's marker in its environment
  (so detached grandchildren count too), and nothing of ours in the round's
  private ``TMPDIR`` (rendezvous dirs, socket dirs, dask scratch space).

Faults: ``sigkill`` (the test SIGKILLs its worker), ``exit`` (``os._exit``),
``segfault``, ``timeout`` (``job(timeout=1)`` on a sleeping test), ``ctrl_c``
(SIGINT to the controller while a test runs) and ``dask_worker_kill`` (the
test SIGKILLs the dask worker hosting it; dask mode only).  The closing note
prints the counts.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import psutil

MODES = ("process", "dask", "xdist")
FAULTS = ("sigkill", "exit", "segfault", "timeout", "ctrl_c", "dask_worker_kill")
INDEPENDENT = 8

SUITE = '''
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import pytest

FAULT = os.environ["STRESS_FAULT"]
HERE = Path(__file__).parent


@pytest.mark.parametrize("n", range({independent}))
def test_independent(n):
    pass


def test_chain_a():
    pass


@pytest.mark.job(after="test_chain_a")
def test_chain_b():
    pass


@pytest.mark.job(after="test_chain_b")
def test_chain_c():
    pass


@pytest.mark.job(exclusive=True)
def test_exclusive():
    pass


@pytest.mark.job(timeout=1)
def test_fault():
    (HERE / "fault-started").write_text(str(os.getpid()))
    if FAULT == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif FAULT == "exit":
        os._exit(3)
    elif FAULT == "segfault":
        ctypes.string_at(0)
    elif FAULT == "dask_worker_kill":
        os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)  # "timeout" and "ctrl_c": stopped from outside


@pytest.mark.job(after="test_fault")
def test_after_fault():
    pass
'''
TESTS = INDEPENDENT + 3 + 1 + 1 + 1
INI = "[pytest]\naddopts = -p no:cacheprovider -p no:randomly -p no:hypothesispytest -p no:anyio -p no:asyncio\n"


def _args(mode: str) -> list[str]:
    if mode == "xdist":
        return ["-n", "2"]
    return [f"--executor-backend={mode}", "--executor-workers=2", "-p", "no:xdist"]


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("STRESS_ROUND") == marker:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def _leftovers(marker: str, grace: float) -> int:
    """Processes of the round still alive after ``grace`` seconds; they are killed then."""
    deadline = time.monotonic() + grace
    while True:
        alive = [p for p in _marked(marker) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    return len(alive)


def _reports(junit: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    if not junit.exists():
        return counts
    for case in ElementTree.parse(junit).iter("testcase"):
        counts[f"{case.get('classname')}::{case.get('name')}"] += 1
    return counts


def run_round(number: int, mode: str, fault: str, bound: float, keep: bool) -> dict[str, object]:
    """One run with one fault; returns what went wrong (empty lists/False when nothing did)."""
    root = Path(tempfile.mkdtemp(prefix=f"stress-{number}-"))
    suite, tmp = root / "suite", root / "tmp"
    suite.mkdir()
    tmp.mkdir()
    (suite / "pytest.ini").write_text(INI)
    (suite / "test_mixed.py").write_text(SUITE.format(independent=INDEPENDENT))
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"TMPDIR": str(tmp), "STRESS_ROUND": marker, "STRESS_FAULT": fault})
    junit = root / "junit.xml"
    short_before = _short_socket_dirs()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *_args(mode), f"--junitxml={junit}", "-q"],
        cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    hung = False
    try:
        if fault == "ctrl_c":
            while not (suite / "fault-started").exists() and proc.poll() is None:
                if time.monotonic() - started > bound:
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=max(1.0, bound - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        hung = True
        proc.kill()
        output, _ = proc.communicate()
    elapsed = time.monotonic() - started
    reports = _reports(junit)
    twice = sorted(name for name, count in reports.items() if count > 1)
    missing = 0 if fault == "ctrl_c" or hung else TESTS - len(reports)
    leftover = _leftovers(marker, grace=15.0)
    litter = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("pytest-of-"))
    litter += sorted(name for name in _short_socket_dirs() - short_before)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "round": number, "mode": mode, "fault": fault, "seconds": round(elapsed, 1), "hung": hung,
        "twice": twice, "missing": missing, "leftover_processes": leftover, "litter": litter,
        "tail": "" if not (hung or twice or missing or leftover or litter) else output[-1500:],
    }


def _short_socket_dirs() -> set[str]:
    """The short socket directories in ``/tmp`` (a long ``TMPDIR`` sends the xdist link there)."""
    return {p.name for p in Path("/tmp").glob("pxe-*")}


def main() -> int:
    """Run the rounds; print one line per problem and the counts at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bound", type=float, default=120.0, help="seconds a run may take")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--keep", action="store_true", help="keep each round's directory")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    modes = options.modes.split(",")
    tally: collections.Counter[str] = collections.Counter()
    problems = 0
    for number in range(options.rounds):
        mode = rng.choice(modes)
        faults = [f for f in FAULTS if mode == "dask" or f != "dask_worker_kill"]
        fault = rng.choice(faults)
        result = run_round(number, mode, fault, options.bound, options.keep)
        tally[f"{mode}/{fault}"] += 1
        bad = [key for key in ("hung", "twice", "missing", "leftover_processes", "litter") if result[key]]
        for key in bad:
            tally[f"problem:{key}"] += 1
        problems += bool(bad)
        status = "ok" if not bad else "PROBLEM " + ", ".join(f"{k}={result[k]}" for k in bad)
        print(f"round {number:3d} {mode:7s} {fault:16s} {result['seconds']:6.1f}s {status}", flush=True)
        if bad:
            print(result["tail"], flush=True)
    print("\nclosing note:")
    print(f"  rounds: {options.rounds}, rounds with a problem: {problems}")
    for key in sorted(tally):
        print(f"  {key}: {tally[key]}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
