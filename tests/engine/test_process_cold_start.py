"""Cold start of the process pool: a plain ``Engine()`` forks its zygote at start; the pool grows with need.

The speed itself is measured by ``benchmarks/bench_engine.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, ProcessJob

from _engine_helpers import touch_then_wait, wait_for_file

pytestmark = pytest.mark.timeout(90)

PLAIN_ENGINE_SCRIPT = textwrap.dedent("""
    import asyncio, json, os, sys
    from executor.engine import Engine, ProcessJob

    def parent_of(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[-1].split()[1])

    def inspect(engine, jobs, report):
        zygote = engine.process_pool.zygote_pid
        with open(f"/proc/{zygote}/cmdline", "rb") as f:
            report["zygote_is_a_fork_of_this_process"] = f.read() == open("/proc/self/cmdline", "rb").read()
        report["workers_children_of_zygote"] = all(parent_of(j.result()) == zygote for j in jobs)
        report["processes"] = [zygote, *engine.process_pool.pids]

    def sync_use(report):
        with Engine() as engine:  # no settings at all
            report["forked_at_start"] = engine._spare_zygote is not None
            jobs = [ProcessJob(os.getpid) for _ in range(20)]
            engine.submit(*jobs)
            engine.wait(timeout=60)
            inspect(engine, jobs, report)

    async def async_use(report):
        engine = Engine()  # no start(): the zygote is forked on the first ProcessJob
        jobs = [ProcessJob(os.getpid) for _ in range(20)]
        await engine.submit_async(*jobs)
        await engine.join(timeout=60)
        inspect(engine, jobs, report)
        engine.stop()

    if __name__ == "__main__":
        report = {}
        if sys.argv[1] == "sync":
            sync_use(report)
        else:
            asyncio.run(async_use(report))
        report["left"] = [p for p in report["processes"] if os.path.exists(f"/proc/{p}")]
        print(json.dumps(report))
""")


@pytest.mark.parametrize("use", ["sync", "async"])
def test_plain_engine_forks_its_zygote_and_leaves_nothing(tmp_path: Path, use: str) -> None:
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_ENGINE_SCRIPT)
    done = subprocess.run([sys.executable, str(script), use], cwd=tmp_path, capture_output=True, text=True,
                          timeout=80, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report.get("forked_at_start", True) is True
    assert report["zygote_is_a_fork_of_this_process"] is True
    assert report["workers_children_of_zygote"] is True
    assert report["left"] == []


def test_jobs_that_hold_their_worker_get_a_worker_each_beyond_one_per_cpu(tmp_path: Path) -> None:
    """No worker comes back: the pool forks one for each waiting job, up to the limit."""
    n = (os.cpu_count() or 1) + 2
    release = str(tmp_path / "release")
    with Engine(EngineSetting(max_process_jobs=n + 5, cache_path=str(tmp_path / "cache"))) as engine:
        jobs = [ProcessJob(touch_then_wait, args=(str(tmp_path / f"started{i}"), release)) for i in range(n)]
        engine.submit(*jobs)
        pids = {int(wait_for_file(str(tmp_path / f"started{i}"), timeout=60)) for i in range(n)}
        assert len(pids) == n
        assert len(engine.process_pool.pids) == n  # one per job, not up to the limit
        Path(release).write_text("")
        assert engine.wait(timeout=60)
        assert {j.result() for j in jobs} == pids


NO_PROCESS_JOBS_SCRIPT = textwrap.dedent("""
    import json, os
    import psutil
    from executor.engine import Engine, LocalJob

    if __name__ == "__main__":
        with Engine() as engine:
            job = LocalJob(os.getpid)
            engine.submit(job)
            engine.wait_job(job, timeout=30)
            children = [p.pid for p in psutil.Process().children()]
            print(json.dumps({"forked": engine._spare_zygote is not None, "children": children}))
""")


def test_an_engine_of_a_program_without_process_jobs_forks_nothing(tmp_path: Path) -> None:
    script = tmp_path / "local_only.py"
    script.write_text(NO_PROCESS_JOBS_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=80,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"forked": False, "children": []}
