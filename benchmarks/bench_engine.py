"""Engine benchmark (not a test): this engine vs executor-engine 0.3.3 vs raw baselines, in one run.

Run from the project root with the dev virtualenv::

    .venv/bin/python benchmarks/bench_engine.py [--quick] [--skip-peer] [--rebuild-peer] [--repeat N]

It measures the performance targets of DESIGN §4 and prints one table of
medians with the ratios against the targets:

(a) 2000 LocalJobs submit+wait (and 200 and 20000, for the "10x jobs costs <= 11x time" scaling);
(b) 100 tiny ProcessJobs on 2 workers, "cold" (the engine is started, its
    process pool is not: pool start included) and "warm" (pool already up),
    against a raw ``concurrent.futures.ProcessPoolExecutor(2)`` started and
    measured the same way (default ``fork`` context; ``forkserver`` and
    ``spawn`` shown for reference: they are the thread-safe start methods);
    and "plain cold": a plain ``Engine()`` (no settings) from construction to
    the end of ``stop()``, against a raw pool from construction to the end of
    its shutdown, both clocks started at the same point (before the engine or
    pool exists);
(c) process CPU-seconds while 500 jobs wait 1 s on an ``AfterTimepoint``;
(d) submit -> running latency of one job (until its function starts), LocalJob and ThreadJob;
(e) 100 ThreadJobs sleeping 50 ms with ``max_jobs=20`` (ideal: 5 rounds of 50 ms = 0.25 s).

Every measurement runs in a fresh interpreter executing the same small
program (written to a temporary directory): once with this project's
interpreter, once with executor-engine 0.3.3's.  executor-engine installs the
same ``executor`` package name, so it lives in its own virtualenv, created on
first use and cached (keyed by version and Python version) under
``$XDG_CACHE_HOME`` or the system temp dir; ``--rebuild-peer`` recreates it.

The peer logs every job at INFO to stderr by default (ours logs only
failures and cancellations): (a) is measured once with logging as shipped
(stderr to a file) and once with the loguru sinks removed, and everything
else with the sinks removed so that it measures the engines, not stderr.  The
peer's ``engine.wait()`` polls (every 0.2 s by default); it is called with
``time_delta=0.01``, ours is event-driven and takes no interval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import typing as T
from dataclasses import dataclass
from pathlib import Path

PEER_PACKAGE = "executor-engine"
PEER_VERSION = "0.3.3"
ROOT = Path(__file__).resolve().parent.parent

# The measurement program, run by both interpreters.  It prints nothing; it
# writes {metric: [samples...]} as JSON to the path given as first argument.
PROGRAM = textwrap.dedent('''
    """Engine measurements (written by benchmarks/bench_engine.py; runs with either engine)."""
    import concurrent.futures
    import json
    import multiprocessing
    import sys
    import threading
    import time
    from datetime import datetime, timedelta

    from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
    from executor.engine.job.condition import AfterTimepoint
    from executor.engine.log import logger

    IS_OURS = hasattr(Engine, "process_pool")


    def tiny(x):
        return x + 1


    def wait_all(engine):
        if IS_OURS:
            engine.wait()
        else:  # the peer's wait() polls every time_delta (0.2 s by default)
            engine.wait(time_delta=0.01)


    CPU = {}  # metric -> CPU-seconds of the same runs (the scaling rows: CPU time is less hit by a busy machine)


    def local_jobs(n):
        with Engine(EngineSetting(max_jobs=None)) as engine:
            jobs = [LocalJob(tiny, args=(i,)) for i in range(n)]
            t0, c0 = time.perf_counter(), time.process_time()
            engine.submit(*jobs)
            wait_all(engine)
            elapsed = time.perf_counter() - t0
            CPU.setdefault(f"local_{n}_cpu", []).append(time.process_time() - c0)
            assert all(j.status == "done" for j in jobs), [j.status for j in jobs][:5]
        return elapsed


    def process_jobs(n, warm):
        with Engine(EngineSetting(max_process_jobs=2)) as engine:
            if warm:
                warmup = [ProcessJob(tiny, args=(i,)) for i in range(2)]
                engine.submit(*warmup)
                wait_all(engine)
            jobs = [ProcessJob(tiny, args=(i,)) for i in range(n)]
            t0 = time.perf_counter()
            engine.submit(*jobs)
            wait_all(engine)
            elapsed = time.perf_counter() - t0
            assert [j.result() for j in jobs] == [i + 1 for i in range(n)]
        return elapsed


    def raw_pool(n, warm, method, with_shutdown=False):
        ctx = multiprocessing.get_context(method)
        t0 = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
            if warm:
                list(pool.map(tiny, range(2)))
                t0 = time.perf_counter()
            futures = [pool.submit(tiny, i) for i in range(n)]
            results = [f.result() for f in futures]
            elapsed = time.perf_counter() - t0
        if with_shutdown:
            elapsed = time.perf_counter() - t0
        assert results == [i + 1 for i in range(n)]
        return elapsed


    def plain_engine_cold(n):
        """A plain Engine(): construction, start, n tiny ProcessJobs and stop() all inside the clock."""
        t0 = time.perf_counter()
        with Engine() as engine:
            jobs = [ProcessJob(tiny, args=(i,)) for i in range(n)]
            engine.submit(*jobs)
            wait_all(engine)
        elapsed = time.perf_counter() - t0
        assert [j.result() for j in jobs] == [i + 1 for i in range(n)]
        return elapsed


    def nap(seconds):  # a Python function: the peer reads its __code__
        time.sleep(seconds)


    def thread_jobs(n, seconds, max_jobs):
        with Engine(EngineSetting(max_jobs=max_jobs)) as engine:
            jobs = [ThreadJob(nap, args=(seconds,)) for _ in range(n)]
            t0 = time.perf_counter()
            engine.submit(*jobs)
            wait_all(engine)
            elapsed = time.perf_counter() - t0
            assert all(j.status == "done" for j in jobs)
        return elapsed


    def idle_cpu(n, wait_s=1.0):
        with Engine(EngineSetting(max_jobs=None)) as engine:
            when = datetime.now() + timedelta(seconds=wait_s)
            jobs = [LocalJob(tiny, args=(i,), condition=AfterTimepoint(timepoint=when)) for i in range(n)]
            engine.submit(*jobs)
            c0 = time.process_time()
            time.sleep(max(0.0, (when - datetime.now()).total_seconds() - 0.02))
            cpu = time.process_time() - c0
            wait_all(engine)
            assert all(j.status == "done" for j in jobs)
        return cpu


    def latencies(job_cls, rounds):
        """Seconds from calling submit() until the job's function starts, one job at a time."""
        samples, running_on_return = [], 0
        with Engine() as engine:
            for i in range(rounds + 1):  # the first round warms the backend up
                started = threading.Event()
                box = []

                def body():
                    box.append(time.perf_counter())
                    started.set()

                job = job_cls(body)
                t0 = time.perf_counter()
                engine.submit(job)
                running_on_return += job.status in ("running", "done")
                if not started.wait(10):
                    raise RuntimeError(f"{job_cls.__name__} did not start within 10 s")
                engine.wait_job(job)
                if i:
                    samples.append(box[0] - t0)
        return samples, running_on_return / (rounds + 1)


    def main():
        out, config = sys.argv[1], json.loads(sys.argv[2])
        repeat, n_proc = config["repeat"], config["process_jobs"]
        results = {}

        def sample(name, fn, *args, times=repeat):
            results[name] = [fn(*args) for _ in range(times)]

        local_jobs(100)  # warm-up: lazy imports, first-use caches
        sample("local_2000_logging", local_jobs, 2000)  # logging as shipped (stderr goes to a file)
        logger.remove()
        sample("local_2000", local_jobs, 2000)
        sample("local_200", local_jobs, 200)
        if config["local_20000"]:
            sample("local_20000", local_jobs, 20000, times=config["big_repeat"])
        # the plain-engine row first: the cold rows must not profit from a pool another row left warm
        if config["raw"]:  # interleaved with ours, so that both see the same load
            results["plain_cold"], results["raw_fork_cold_shutdown"] = [], []
            for _ in range(config["process_repeat"]):
                results["plain_cold"].append(plain_engine_cold(n_proc))
                results["raw_fork_cold_shutdown"].append(raw_pool(n_proc, False, "fork", True))
        else:
            sample("plain_cold", plain_engine_cold, n_proc, times=config["process_repeat"])
        sample("process_cold", process_jobs, n_proc, False, times=config["process_repeat"])
        sample("process_warm", process_jobs, n_proc, True, times=config["process_repeat"])
        if config["raw"]:
            for method in ("fork", "forkserver", "spawn"):
                sample(f"raw_{method}_cold", raw_pool, n_proc, False, method)
            sample("raw_fork_warm", raw_pool, n_proc, True, "fork")
        sample("threads_100x50ms", thread_jobs, 100, 0.05, 20, times=config["idle_repeat"])
        results.update(CPU)
        sample("idle_cpu_500", idle_cpu, 500, times=config["idle_repeat"])
        for cls in (LocalJob, ThreadJob):
            lat, running = latencies(cls, config["latency_rounds"])
            results[f"latency_{cls.__name__}"] = lat
            results[f"running_on_return_{cls.__name__}"] = [running]
        with open(out, "w") as f:
            json.dump(results, f)


    if __name__ == "__main__":
        main()
''')


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    label: str
    ours: str
    peer: str
    peer_ratio: str
    baseline: str
    base_ratio: str
    target: str
    met: str


# --------------------------------------------------------------- the peer venv
def peer_venv_dir() -> Path:
    """Where the peer's virtualenv is cached, keyed by its version and our Python version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or tempfile.gettempdir()) / "pytest-executor-bench"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return base / f"{PEER_PACKAGE}-{PEER_VERSION}-{tag}"


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a virtualenv."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_peer_venv(rebuild: bool) -> Path:
    """Create (or reuse) the peer's virtualenv; returns its interpreter."""
    target = peer_venv_dir()
    done_marker = target / ".complete"
    if rebuild and target.exists():
        shutil.rmtree(target)
    if done_marker.exists():
        return venv_python(target)
    print(f"creating the {PEER_PACKAGE}=={PEER_VERSION} virtualenv in {target} ...", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        _run_checked([sys.executable, "-m", "venv", str(staging)], "python -m venv")
        _run_checked([str(venv_python(staging)), "-m", "pip", "install", "--disable-pip-version-check",
                      "-q", f"{PEER_PACKAGE}=={PEER_VERSION}"], f"pip install {PEER_PACKAGE}=={PEER_VERSION}")
        if target.exists():  # a half-built leftover of an interrupted run
            shutil.rmtree(target)
        staging.rename(target)  # only bin/python is used, which finds its site-packages relative to itself
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    done_marker.write_text(f"{PEER_PACKAGE}=={PEER_VERSION}\n")
    return venv_python(target)


def _run_checked(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit code {proc.returncode}):\n{proc.stdout}{proc.stderr}")


# ----------------------------------------------------------------- measuring
def measure(python: Path | str, workdir: Path, config: dict, label: str, env: dict[str, str]) -> dict:
    """Run the measurement program with ``python``; return its samples."""
    program = workdir / "measure.py"
    if not program.exists():
        program.write_text(PROGRAM)
    out = workdir / f"{label}.json"
    print(f"measuring {label} ...", file=sys.stderr)
    t0 = time.perf_counter()
    log = workdir / f"{label}.stderr"
    with open(log, "w") as stderr:  # a file: the peer logs every job to stderr by default
        proc = subprocess.run([str(python), str(program), str(out), json.dumps(config)], cwd=workdir,
                              env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = log.read_text()[-5000:]
        raise SystemExit(f"the {label} measurements failed (exit code {proc.returncode}):\n{proc.stdout}{tail}")
    print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return T.cast(dict, json.loads(out.read_text()))


def clean_env(extra_path: str | None) -> dict[str, str]:
    """The environment of a measurement run: no inherited PYTHONPATH, ours added where needed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return env


def median(samples: dict, key: str) -> float | None:
    """The median of a metric's samples, None when it was not measured."""
    values = samples.get(key)
    return statistics.median(values) if values else None


# ------------------------------------------------------------------ the table
def fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds (or "-")."""
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.3f} ms"


def fmt_cpu(seconds: float | None) -> str:
    """CPU-seconds (or "-")."""
    return "-" if seconds is None else f"{seconds:.4f} CPU-s"


def fmt_ratio(num: float | None, den: float | None) -> str:
    """``num / den`` as ``12.3x`` (or "-")."""
    if num is None or den is None or den <= 0:
        return "-"
    return f"{num / den:.2f}x"


def verdict(ok: bool | None) -> str:
    """yes / NO / - for a target check."""
    return "-" if ok is None else ("yes" if ok else "NO")


def build_rows(ours: dict, peer: dict | None, n_proc: int) -> list[Row]:
    """The table rows: medians, ratios, targets."""
    def p(key: str) -> float | None:
        return median(peer, key) if peer is not None else None

    rows: list[Row] = []
    for key, label in (("local_2000_logging", "(a) 2000 LocalJobs submit+wait, logging as shipped"),
                       ("local_2000", "(a) 2000 LocalJobs submit+wait, loguru sinks removed")):
        mine, theirs = median(ours, key), p(key)
        rows.append(Row(label, fmt_ms(mine), fmt_ms(theirs), fmt_ratio(theirs, mine), "", "",
                        ">= 10x faster than peer",
                        verdict(None if theirs is None or mine is None else theirs / mine >= 10)))
    o2000 = median(ours, "local_2000")
    o200, p200 = median(ours, "local_200"), p("local_200")
    scale = None if o200 is None or o2000 is None else o2000 / o200
    rows.append(Row("    200 LocalJobs (10x jobs -> time ratio)", fmt_ms(o200), fmt_ms(p200),
                    fmt_ratio(p200, o200), "", f"{scale:.2f}x" if scale else "-",
                    "2000 vs 200 <= 11x", verdict(None if scale is None else scale <= 11)))
    o20k = median(ours, "local_20000")
    big = None if o20k is None or o2000 is None else o20k / o2000
    c2k, c20k = median(ours, "local_2000_cpu"), median(ours, "local_20000_cpu")
    cpu_ratio = f"in CPU time {fmt_ratio(c20k, c2k)}" if c2k and c20k else ""
    rows.append(Row("    20000 LocalJobs (vs 2000: time ratio)", fmt_ms(o20k), "(not run)", "", cpu_ratio,
                    f"{big:.2f}x" if big else "-", "20000 vs 2000 <= 11x",
                    verdict(None if big is None else big <= 11)))
    mine, theirs = median(ours, "plain_cold"), p("plain_cold")
    raw = median(ours, "raw_fork_cold_shutdown")
    rows.append(Row(f"(b) {n_proc} tiny ProcessJobs, plain Engine(), cold, stop() included", fmt_ms(mine),
                    fmt_ms(theirs), fmt_ratio(theirs, mine), f"raw PPE(2) fork + shutdown {fmt_ms(raw)}",
                    fmt_ratio(mine, raw), "<= 1.5x raw",
                    verdict(None if mine is None or raw is None else mine / raw <= 1.5)))
    for mode, raw_key in (("cold", "raw_fork_cold"), ("warm", "raw_fork_cold")):
        mine, theirs, raw = median(ours, f"process_{mode}"), p(f"process_{mode}"), median(ours, raw_key)
        bound = 1.5 if mode == "cold" else 1.0  # warm: against the cold raw pool (DESIGN §4)
        rows.append(Row(f"(b) {n_proc} tiny ProcessJobs, 2 workers, {mode}", fmt_ms(mine), fmt_ms(theirs),
                        fmt_ratio(theirs, mine), f"raw PPE(2) fork, cold {fmt_ms(raw)}", fmt_ratio(mine, raw),
                        f"<= {bound}x raw", verdict(None if mine is None or raw is None else mine / raw <= bound)))
        if mode == "warm":
            other = median(ours, "raw_fork_warm")
            rows.append(Row("", "", "", "", f"raw PPE(2) fork, warm {fmt_ms(other)}", fmt_ratio(mine, other),
                            "(reference)", ""))
        if mode == "cold":
            for method in ("forkserver", "spawn"):
                other = median(ours, f"raw_{method}_cold")
                rows.append(Row("", "", "", "", f"raw PPE(2) {method} {fmt_ms(other)}",
                                fmt_ratio(mine, other), "(reference)", ""))
    ocpu, pcpu = median(ours, "idle_cpu_500"), p("idle_cpu_500")
    rows.append(Row("(c) 500 jobs pending 1 s on AfterTimepoint", fmt_cpu(ocpu), fmt_cpu(pcpu),
                    fmt_ratio(pcpu, ocpu), "", "", "<= 0.05 CPU-s",
                    verdict(None if ocpu is None else ocpu <= 0.05)))
    othr, pthr = median(ours, "threads_100x50ms"), p("threads_100x50ms")
    rows.append(Row("(e) 100 ThreadJobs of 50 ms, max_jobs=20", fmt_ms(othr), fmt_ms(pthr), fmt_ratio(pthr, othr),
                    "ideal 250.0 ms", "", "<= 280 ms", verdict(None if othr is None else othr <= 0.28)))
    for cls in ("LocalJob", "ThreadJob"):
        olat, plat = median(ours, f"latency_{cls}"), p(f"latency_{cls}")
        running = median(ours, f"running_on_return_{cls}")
        note = f"running when submit() returns: {running:.0%}" if running is not None else ""
        rows.append(Row(f"(d) submit -> running, {cls}", fmt_ms(olat), fmt_ms(plat), fmt_ratio(plat, olat),
                        note, "", "<= 1 ms", verdict(None if olat is None else olat <= 1e-3)))
    return rows


def print_table(rows: list[Row], peer_label: str) -> None:
    """Print the rows as an aligned text table."""
    header = Row("measurement (median)", "ours", peer_label, "peer/ours", "baseline", "ours/base",
                 "target", "met")
    table = [header, *rows]
    fields = list(Row.__dataclass_fields__)
    widths = [max(len(getattr(r, f)) for r in table) for f in fields]
    for i, row in enumerate(table):
        print("  ".join(getattr(row, f).ljust(w) for f, w in zip(fields, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one sample per measurement (rough numbers, fast)")
    parser.add_argument("--skip-peer", action="store_true", help=f"do not measure {PEER_PACKAGE}=={PEER_VERSION}")
    parser.add_argument("--rebuild-peer", action="store_true", help="recreate the peer's cached virtualenv")
    parser.add_argument("--peer-python", type=Path, default=None,
                        help=f"an interpreter that has {PEER_PACKAGE}=={PEER_VERSION} installed (default: the cached virtualenv)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="samples per measurement (default 5; 1 with --quick); the table shows medians")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure both engines and print the table."""
    args = parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 5)
    config = {"repeat": repeat, "process_repeat": repeat, "idle_repeat": min(repeat, 3),
              "process_jobs": 100, "latency_rounds": 50 if args.quick else 200, "raw": True,
              "local_20000": True, "big_repeat": min(repeat, 3)}
    if args.skip_peer:
        peer_python = None
    elif args.peer_python is not None:
        if not args.peer_python.exists():
            raise SystemExit(f"--peer-python {args.peer_python} does not exist")
        peer_python = args.peer_python
    else:
        peer_python = ensure_peer_venv(args.rebuild_peer)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        workdir = Path(tmp)
        ours = measure(sys.executable, workdir, config, "ours", clean_env(str(ROOT)))
        peer = None
        if peer_python is not None:
            peer_config = {**config, "raw": False, "process_repeat": min(repeat, 3), "local_20000": False}
            peer = measure(peer_python, workdir, peer_config, f"{PEER_PACKAGE} {PEER_VERSION}", clean_env(None))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, medians of {repeat} samples "
          f"(idle CPU: {config['idle_repeat']}; peer ProcessJobs: {min(repeat, 3)}; "
          f"latency: {config['latency_rounds']} rounds); PPE = concurrent.futures.ProcessPoolExecutor")
    print_table(build_rows(ours, peer, T.cast(int, config["process_jobs"])),
                f"{PEER_PACKAGE} {PEER_VERSION}" if peer is not None else "peer (skipped)")


if __name__ == "__main__":
    main()
