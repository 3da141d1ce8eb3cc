"""The Jobs manager: status views, lookup, clearing, and the persistent SQLite store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ThreadJob
from executor.engine.manager import JobNotFoundError, Jobs

from _engine_helpers import add, fail, wait_for_file


def test_status_views_follow_the_jobs() -> None:
    gate = threading.Event()
    with Engine() as engine:
        running = ThreadJob(gate.wait, args=(30,))
        pending = LocalJob(add, args=(running.future, 1))
        done = LocalJob(add, args=(1, 1))
        failed = LocalJob(fail)
        engine.submit(running, pending, done, failed)
        engine.wait_job(done, timeout=30)
        engine.wait_job(failed, timeout=30)
        jobs = engine.jobs
        assert len(jobs.running) == 1 and running.id in jobs.running and running in jobs.running
        assert list(jobs.pending) == [pending.id] and list(jobs.pending.values()) == [pending]
        assert len(jobs.done) == 1 and len(jobs.failed) == 1 and len(jobs) == 4
        assert jobs.get_job_by_id(done.id) is done and jobs.get("nope") is None
        with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
            jobs.get_job_by_id("nope")
        assert set(jobs) == {running, pending, done, failed}
        engine.cancel(running)
        assert len(jobs.cancelled) == 2  # the dependent was cancelled with it
        gate.set()
        jobs.clear_done()
        assert done.id not in jobs and len(jobs.done) == 0
        jobs.clear_failed()
        jobs.clear_cancelled()
        assert len(jobs) == 0


def test_remove_refuses_active_jobs() -> None:
    gate = threading.Event()
    with Engine() as engine:
        job = ThreadJob(gate.wait, args=(30,))
        engine.submit(job)
        with pytest.raises(ValueError, match="cancel it"):
            engine.jobs.remove(job)
        gate.set()


def test_jobs_persist_and_reload(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Engine(EngineSetting(cache_type="diskcache", cache_path=str(store))) as engine:
        ok = LocalJob(add, args=(1, 2), name="ok")
        bad = LocalJob(fail, args=("persisted",))
        engine.submit(ok, bad)
        engine.wait(timeout=30)
    assert (store / "jobs.sqlite").exists()
    reloaded = Jobs(store)
    assert len(reloaded) == 2
    again = reloaded.get_job_by_id(ok.id)
    assert again is not None and again.status == "done" and again.result() == 3 and again.name == "ok"
    failed = reloaded.get_job_by_id(bad.id)
    assert failed is not None and str(failed.exception()) == "persisted"
    with Engine(jobs=reloaded) as engine2:  # a reloaded job can be rerun
        engine2.submit(again)
        engine2.wait(timeout=30)
        assert again.result() == 3 and again.engine is engine2
    reloaded.close()


def test_store_written_while_a_job_ran_reloads_after_a_crash(tmp_path: Path) -> None:
    store, started = tmp_path / "store", tmp_path / "started"
    script = textwrap.dedent(f"""
        import os, threading
        from pathlib import Path
        from executor.engine import Engine, EngineSetting, ThreadJob, LocalJob
        def work():
            Path({str(started)!r}).write_text("x")
            threading.Event().wait(60)
        with Engine(EngineSetting(cache_type="diskcache", cache_path={str(store)!r})) as engine:
            engine.submit(LocalJob(int, args=("7",)))
            engine.wait()
            engine.submit(ThreadJob(work, name="interrupted"))
            while not Path({str(started)!r}).exists():
                threading.Event().wait(0.01)
            os._exit(9)  # crash: no cleanup, no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    jobs = Jobs(store)
    by_name = {job.name: job for job in jobs}
    assert by_name["int"].status == "done" and by_name["int"].result() == 7
    assert by_name["interrupted"].status == "cancelled"  # nothing runs it any more
    jobs.close()


def test_jobs_rejects_bad_cache_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_type"):
        Jobs(tmp_path, cache_type="redis")
    with pytest.raises(ValueError, match="cache_path"):
        Jobs(cache_type="diskcache")
    with pytest.raises(ValueError, match="cache_type"):
        EngineSetting(cache_type="redis")  # type: ignore[arg-type]


def test_no_store_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    jobs = Jobs()
    jobs.add(LocalJob(add, args=(1, 1)))
    assert list(tmp_path.iterdir()) == []
    _ = wait_for_file  # shared helper module import check
