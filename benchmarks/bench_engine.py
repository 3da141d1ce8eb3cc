"""Engine micro-benchmarks (not a test): prints timings and ratios against raw baselines.

Run: ``python benchmarks/bench_engine.py`` from the project root.

* 2000 LocalJobs submit+wait (and 200, for the 10x scaling ratio);
* 100 tiny ProcessJobs on 2 workers vs a raw ``ProcessPoolExecutor(2)``
  (cold: pool start included; warm: pool already up);
* CPU seconds spent while 500 jobs wait 1 s on an ``AfterTimepoint``;
* submit -> running latency of one job.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time
from datetime import datetime, timedelta

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.condition import AfterTimepoint


def tiny(x: int) -> int:
    return x + 1


def bench_local(n: int) -> float:
    with Engine(EngineSetting(max_jobs=None)) as engine:
        jobs = [LocalJob(tiny, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        engine.submit(*jobs)
        engine.wait()
        elapsed = time.perf_counter() - t0
        assert all(j.status == "done" for j in jobs)
    return elapsed


def bench_local_one_by_one(n: int) -> float:
    with Engine(EngineSetting(max_jobs=None)) as engine:
        t0 = time.perf_counter()
        for i in range(n):
            engine.submit(LocalJob(tiny, args=(i,)))
        engine.wait()
        return time.perf_counter() - t0


def bench_process(n: int, warm: bool) -> float:
    with Engine(EngineSetting(max_process_jobs=2)) as engine:
        if warm:
            warmup = [ProcessJob(tiny, args=(i,)) for i in range(2)]
            engine.submit(*warmup)
            engine.wait()
        jobs = [ProcessJob(tiny, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        engine.submit(*jobs)
        engine.wait()
        elapsed = time.perf_counter() - t0
        assert [j.result() for j in jobs] == [i + 1 for i in range(n)]
    return elapsed


def bench_raw_pool(n: int, warm: bool, method: str | None = None) -> float:
    import multiprocessing

    ctx = multiprocessing.get_context(method) if method else None
    t0 = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        if warm:
            list(pool.map(tiny, range(2)))
            t0 = time.perf_counter()
        futs = [pool.submit(tiny, i) for i in range(n)]
        results = [f.result() for f in futs]
        elapsed = time.perf_counter() - t0
    assert results == [i + 1 for i in range(n)]
    return elapsed


def bench_idle_cpu(n: int) -> float:
    with Engine(EngineSetting(max_jobs=None)) as engine:
        when = datetime.now() + timedelta(seconds=1.0)
        jobs = [LocalJob(tiny, args=(i,), condition=AfterTimepoint(timepoint=when)) for i in range(n)]
        engine.submit(*jobs)
        c0 = time.process_time()
        time.sleep(max(0.0, (when - datetime.now()).total_seconds() - 0.02))
        cpu = time.process_time() - c0
        engine.wait()
        assert all(j.status == "done" for j in jobs)
    return cpu


def bench_latency(rounds: int = 200) -> tuple[float, float]:
    """Median seconds of submit() returning with the job running, and until a thread job's body runs."""
    started = threading.Event()
    submit_times, body_times = [], []
    with Engine() as engine:
        engine.submit(ThreadJob(tiny, args=(0,)))
        engine.wait()
        for _ in range(rounds):
            started.clear()
            box: list[float] = []
            job = ThreadJob(lambda: (box.append(time.perf_counter()), started.set()))
            t0 = time.perf_counter()
            engine.submit(job)
            t1 = time.perf_counter()
            assert job.status in ("running", "done")
            started.wait(5)
            submit_times.append(t1 - t0)
            body_times.append(box[0] - t0)
            engine.wait_job(job)
    return statistics.median(submit_times), statistics.median(body_times)


def main() -> None:
    local_2000 = min(bench_local(2000) for _ in range(3))
    local_200 = min(bench_local(200) for _ in range(3))
    one_by_one = bench_local_one_by_one(2000)
    print(f"2000 LocalJobs, one submit(*jobs) + wait: {local_2000 * 1e3:8.1f} ms "
          f"({local_2000 / 2000 * 1e6:.1f} us/job)")
    print(f"2000 LocalJobs, 2000 submit() calls + wait: {one_by_one * 1e3:8.1f} ms "
          f"({one_by_one / 2000 * 1e6:.1f} us/job)")
    print(f"200 LocalJobs: {local_200 * 1e3:.1f} ms -> 10x jobs cost {local_2000 / local_200:.2f}x time")
    for warm in (False, True):
        ours = min(bench_process(100, warm) for _ in range(3))
        raw = min(bench_raw_pool(100, warm) for _ in range(3))
        label = "warm" if warm else "cold"
        print(f"100 tiny ProcessJobs, 2 workers ({label}): {ours * 1e3:7.1f} ms vs raw "
              f"ProcessPoolExecutor(2) {raw * 1e3:7.1f} ms -> ratio {ours / raw:.2f}")
        if not warm:
            # fork is the 3.11 default on Linux but unsafe with threads; compare with the safe methods too
            for method in ("forkserver", "spawn"):
                other = min(bench_raw_pool(100, warm, method) for _ in range(3))
                print(f"    vs raw ProcessPoolExecutor(2, {method}) {other * 1e3:7.1f} ms -> ratio {ours / other:.2f}")
    cpu = bench_idle_cpu(500)
    print(f"500 jobs pending 1 s on AfterTimepoint: {cpu:.4f} CPU-seconds while waiting")
    submit_lat, body_lat = bench_latency()
    print(f"submit -> running (submit() returns, job running): median {submit_lat * 1e3:.3f} ms; "
          f"until the ThreadJob body runs: {body_lat * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
