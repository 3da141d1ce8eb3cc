"""Benchmark the extended job types against plain baselines and executor-engine 0.3.3, in one run.

Workloads (medians of ``--rounds`` timed rounds after one warm-up):

* 100 tiny DaskJobs on one 2-worker LocalCluster (in a process of its own), against a plain
  ``client.map`` + ``gather`` over the same cluster (target: ours <= 2x);
* 50 ``SubprocessJob("true")`` at concurrency ``--concurrency``, against
  ``subprocess.run("true", shell=True)`` on a thread pool of that size
  (target: ours <= 1.2x). That loop reads no pipe and writes no file, while a
  SubprocessJob pipes the command's stderr (relayed, its tail kept for the
  error) and, with ``record_cmd``, writes the command into the job's cache dir;
  so a second baseline, ``subprocess.run(..., stderr=PIPE)``, is printed for a
  like-for-like view (the verdict stays against the plain loop). Both
  engines record each command by default (``record_cmd=True``, as
  executor-engine 0.3.3); the target applies to the ``record_cmd=False`` row,
  the engine's own cost, since the plain loop writes no file. Rounds of the
  baselines and of our variants are interleaved, so a busy neighbour on a
  shared machine slows all of them alike.

executor-engine 0.3.3 installs the same ``executor`` package name, so it runs
in its own virtualenv created under a temporary directory (never in this
project's), driven by this same file with ``--side peer``; it submits to the
same cluster. Usage::

    .venv/bin/python benchmarks/bench_extend.py [--rounds 5] [--concurrency 4] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import typing as T
from pathlib import Path

N_DASK = 100
N_SUBPROCESS = 50
PEER = "executor-engine==0.3.3"


def tiny(x: int) -> int:
    """The dask workload: as small as a task gets."""
    return x + 1


def median_of(rounds: int, run: T.Callable[[], float]) -> float:
    """Run once to warm up, then ``rounds`` times; the median duration."""
    run()
    return statistics.median(run() for _ in range(rounds))


# ------------------------------------------------------------------ baselines
def plain_dask(address: str, rounds: int) -> float:
    from distributed import Client

    with Client(address) as client:
        def once() -> float:
            start = time.perf_counter()
            client.gather(client.map(tiny, range(N_DASK), pure=False))
            return time.perf_counter() - start

        return median_of(rounds, once)


def plain_subprocess_round(concurrency: int, stderr: int | None = None) -> float:
    """One round of the plain loop: ``subprocess.run("true")`` on a fresh pool of ``concurrency`` threads."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(lambda _: subprocess.run("true", shell=True, stderr=stderr).returncode,
                              range(N_SUBPROCESS)))
    assert codes == [0] * N_SUBPROCESS
    return time.perf_counter() - start


def interleaved_medians(rounds: int, runs: dict[str, T.Callable[[], float]]) -> dict[str, float]:
    """One warm-up of each, then ``rounds`` rounds of all of them in turn; the median of each."""
    for run in runs.values():
        run()
    durations: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            durations[name].append(run())
    return {name: statistics.median(values) for name, values in durations.items()}


# ---------------------------------------------------------------- engine side
def engine_side(address: str, concurrency: int, rounds: int, cache: str,
                baselines: bool = False) -> dict[str, float]:
    """Time both workloads with whichever ``executor.engine`` this interpreter imports.

    With ``baselines``, the plain subprocess loops run interleaved with our rounds.
    """
    from distributed import Client

    from executor.engine import Engine, EngineSetting
    from executor.engine.job import LocalJob
    from executor.engine.job.dask import DaskJob
    from executor.engine.job.extend import SubprocessJob

    def setting(**limits: T.Any) -> T.Any:
        kwargs = dict(limits)
        if "cache_path" in EngineSetting.__dataclass_fields__:
            kwargs["cache_path"] = cache
        return EngineSetting(**kwargs)

    async def dask_rounds() -> float:
        client = await Client(address, asynchronous=True)
        engine = Engine(setting=setting(max_jobs=N_DASK * 2))
        engine.dask_client = client
        durations = []
        for round_index in range(rounds + 1):
            # fresh arguments each round: a peer submitting pure tasks must not hit results kept from before
            values = range(round_index * N_DASK, (round_index + 1) * N_DASK)
            jobs = [DaskJob(tiny, args=(v,)) for v in values]
            start = time.perf_counter()
            await engine.submit_async(*jobs)
            await engine.join()
            durations.append(time.perf_counter() - start)
            assert [j.result() for j in jobs] == [v + 1 for v in values]
        await client.close()
        return statistics.median(durations[1:])

    def subprocess_timings() -> dict[str, float]:
        with Engine(setting=setting(max_jobs=concurrency, max_thread_jobs=concurrency)) as engine:
            def ours(**options: T.Any) -> T.Callable[[], float]:
                def once() -> float:
                    jobs = [SubprocessJob("true", **options) for _ in range(N_SUBPROCESS)]
                    start = time.perf_counter()
                    engine.submit(*jobs)
                    # executor-engine polls at time_delta (0.2 s by default), which would round each
                    # of its rounds up to a multiple of 0.2 s; ours ignores it (event-driven)
                    engine.wait(time_delta=0.01)
                    elapsed = time.perf_counter() - start
                    assert [j.result() for j in jobs] == [0] * N_SUBPROCESS
                    return elapsed

                return once

            runs: dict[str, T.Callable[[], float]] = {}
            if baselines:
                runs["plain"] = lambda: plain_subprocess_round(concurrency)
                runs["plain_pipe"] = lambda: plain_subprocess_round(concurrency, subprocess.PIPE)
            runs.update({"subprocess": ours(), "subprocess_norecord": ours(record_cmd=False),
                         "subprocess_record": ours(record_cmd=True), "subprocess_local": ours(base_class=LocalJob)})
            return interleaved_medians(rounds, runs)

    return {"dask": asyncio.run(dask_rounds()), **subprocess_timings()}


def disk_cost(folder: Path, samples: int = 50) -> float:
    """Seconds to create one directory holding one small file, as record_cmd does."""
    start = time.perf_counter()
    for index in range(samples):
        job_dir = folder / "disk-probe" / str(index)
        job_dir.mkdir(parents=True)
        (job_dir / "command.sh").write_text("true\n")
    return (time.perf_counter() - start) / samples


_CLUSTER_SCRIPT = """
import logging, sys
from distributed import LocalCluster
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR, local_directory=sys.argv[1]) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin
"""


@contextlib.contextmanager
def cluster_process(workdir: Path) -> T.Iterator[str]:
    """A 2-worker LocalCluster in a process of its own (no side shares the scheduler's interpreter)."""
    script = workdir / "cluster.py"
    script.write_text(_CLUSTER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(workdir / "dask")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the peer
def peer_python(workdir: Path) -> Path:
    """A fresh virtualenv with executor-engine 0.3.3 (and dask), its python."""
    venv = workdir / "peer-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PEER,
                                "dask[distributed]"], capture_output=True, text=True)
    if installed.returncode != 0:
        raise RuntimeError(f"cannot install {PEER} in {venv}:\n{installed.stderr[-3000:]}")
    return python


def run_peer(python: Path, address: str, concurrency: int, rounds: int, workdir: Path) -> dict[str, float]:
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--side", "peer", "--address", address,
         "--concurrency", str(concurrency), "--rounds", str(rounds)],
        cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the {PEER} run failed:\n{out.stderr[-3000:]}")
    return T.cast(dict, json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------- main
def report(rows: list[tuple[str, float, float, float | None, float | None]]) -> None:
    """Print one line per workload; rows without a target are there for comparison only."""
    print(f"{'workload':<44} {'plain':>9} {'ours':>9} {'ee-0.3.3':>9} {'ours/plain':>11} "
          f"{'ee/plain':>9} {'target':>7}")
    for name, plain, ours, peer, target in rows:
        peer_text = f"{peer:8.3f}s" if peer is not None else f"{'-':>9}"
        peer_ratio = f"{peer / plain:8.2f}x" if peer is not None else f"{'-':>9}"
        if target is None:
            target_text, verdict = "", ""
        else:
            target_text, verdict = f"<={target}x", "ok" if ours / plain <= target else "MISSED"
        print(f"{name:<44} {plain:8.3f}s {ours:8.3f}s {peer_text} {ours / plain:10.2f}x {peer_ratio} "
              f"{target_text:>7} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-peer", action="store_true", help="skip executor-engine 0.3.3")
    parser.add_argument("--side", choices=["main", "peer"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side == "peer":
        with tempfile.TemporaryDirectory() as cache:
            print(json.dumps(engine_side(args.address, args.concurrency, args.rounds, cache)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-extend-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)  # whatever an engine caches lands in the temporary directory
        python = None if args.no_peer else peer_python(workdir)
        with cluster_process(workdir) as address:
            plain = {"dask": plain_dask(address, args.rounds)}
            ours = engine_side(address, args.concurrency, args.rounds, str(workdir / "cache"), baselines=True)
            plain["subprocess"] = ours["plain"]
            peer = None if python is None else run_peer(python, address, args.concurrency, args.rounds, workdir)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds (median)")
        report([
            (f"{N_DASK} tiny DaskJobs, 2-worker LocalCluster", plain["dask"], ours["dask"],
             None if peer is None else peer["dask"], 2.0),
            (f"{N_SUBPROCESS} SubprocessJob('true'), concurrency {args.concurrency}", plain["subprocess"],
             ours["subprocess"], None if peer is None else peer["subprocess"], None),
            ("  same, record_cmd=False", plain["subprocess"], ours["subprocess_norecord"],
             None if peer is None else peer["subprocess_norecord"], 1.2),
            ("  same, record_cmd=True", plain["subprocess"], ours["subprocess_record"],
             None if peer is None else peer["subprocess_record"], None),
            ("  same, base_class=LocalJob", plain["subprocess"], ours["subprocess_local"],
             None if peer is None else peer["subprocess_local"], None),
        ])
        pipe = ours["plain_pipe"]
        print(f"like for like: the plain loop reading each command's stderr pipe (as a SubprocessJob must, "
              f"for its stderr tail) takes {pipe:.3f}s; ours/that: {ours['subprocess'] / pipe:.2f}x "
              f"(record_cmd=True {ours['subprocess_record'] / pipe:.2f}x, "
              f"LocalJob {ours['subprocess_local'] / pipe:.2f}x)")
        print(f"record_cmd writes one new directory and file per job: {disk_cost(workdir) * 1e3:.2f} ms each "
              "on this disk (the plain loop writes nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
