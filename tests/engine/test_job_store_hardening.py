"""The job store after a kill -9 mid-write, and a store file SQLite cannot read."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob
from executor.engine.manager import DB_NAME, Jobs, JobStoreCorruptError
from executor.engine.store_recovery import recover_job_store

pytestmark = pytest.mark.timeout(120)


def _wait_for_rows(db: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the writer committed ``count`` rows (polling the store read-only)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the writer ended before it was killed"
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    if conn.execute("SELECT count(*) FROM jobs").fetchone()[0] >= count:
                        return
            except sqlite3.DatabaseError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"{count} rows never reached {db}")


def test_kill_9_while_writing_reloads_every_job_in_a_final_status(tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = textwrap.dedent(f"""
        from executor.engine import Engine, EngineSetting, LocalJob
        with Engine(EngineSetting(cache_type="diskcache", cache_path={str(store)!r})) as engine:
            while True:  # jobs move created -> pending -> running -> done all the time
                engine.submit(*[LocalJob(int, args=("1",)) for _ in range(50)])
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        _wait_for_rows(store / DB_NAME, 500, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    jobs = Jobs(store)
    try:
        statuses = {job.status for job in jobs}
        assert len(jobs) >= 500
        assert statuses <= {"done", "cancelled"}, statuses  # never created/pending/running
        assert all(job.result() == 1 for job in jobs.done.values())
    finally:
        jobs.close()


def test_the_store_file_is_private(tmp_path: Path) -> None:
    with Engine(EngineSetting(cache_type="diskcache", cache_path=str(tmp_path))) as engine:
        engine.submit(LocalJob(int, args=("1",)))
        engine.wait(timeout=30)
        for path in tmp_path.glob(f"{DB_NAME}*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _corrupt_store(directory: Path, jobs_count: int) -> Path:
    """A store with ``jobs_count`` done jobs, then a damaged page in the middle of the file."""
    with Engine(EngineSetting(cache_type="diskcache", cache_path=str(directory))) as engine:
        engine.submit(*[LocalJob(str, args=("x" * 3000,)) for _ in range(jobs_count)])
        engine.wait(timeout=60)
    db = directory / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(4096))
    return db


def test_a_file_that_is_not_a_database_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not an SQLite file at all " * 200)
    before = db.read_bytes()
    with pytest.raises(JobStoreCorruptError) as info:
        Jobs(tmp_path)
    assert str(db) in str(info.value)
    assert "recover_job_store" in str(info.value)
    assert db.read_bytes() == before  # never destroyed nor rewritten


def test_recover_copies_the_readable_jobs_and_leaves_the_original(tmp_path: Path) -> None:
    db = _corrupt_store(tmp_path / "broken", 60)
    before = db.read_bytes()
    try:
        jobs = Jobs(db.parent)
    except JobStoreCorruptError as error:
        assert str(db) in str(error)
    else:  # the damage hit no page the reload reads
        jobs.close()
    recovered = recover_job_store(db, tmp_path / "new")
    assert 0 < recovered <= 60
    assert db.read_bytes() == before
    fresh = Jobs(tmp_path / "new")
    try:
        assert len(fresh) == recovered
        assert all(job.result() == "x" * 3000 for job in fresh.done.values())
    finally:
        fresh.close()
    with pytest.raises(FileExistsError):
        recover_job_store(db, tmp_path / "new")  # never merges into an existing store
