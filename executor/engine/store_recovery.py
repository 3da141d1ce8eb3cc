"""Recover what is readable from a damaged job store into a new one.

The original file is never modified: it is copied (with its ``-wal`` journal)
into a private temporary directory and read from there, row by row, so a
damaged page costs the jobs on that page and nothing else.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import typing as T
from pathlib import Path

from .manager import DB_NAME, Jobs

__all__ = ["recover_job_store"]

_MAX_MISSES = 1000
"""Unreadable rowids in a row after which probing a damaged table stops."""


def recover_job_store(store_file: T.Union[str, Path], new_cache_path: T.Union[str, Path]) -> int:
    """Copy the readable jobs of ``store_file`` into a new store in ``new_cache_path``.

    Returns how many jobs were recovered. Jobs come back as a reload gives them
    (a job that was not finished is ``cancelled``). ``new_cache_path`` must not
    hold a store already: recovering never merges into, nor overwrites, a store.
    """
    source = Path(store_file)
    target = Path(new_cache_path) / DB_NAME
    if not source.is_file():
        raise FileNotFoundError(f"no job store file at {source}")
    if target.exists():
        raise FileExistsError(f"{target} exists already: recover into an empty directory")
    with tempfile.TemporaryDirectory(prefix="executor-store-recovery-") as scratch:
        copy = Path(scratch) / DB_NAME
        shutil.copyfile(source, copy)
        wal = source.with_name(source.name + "-wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        rows = _readable_rows(copy)
    jobs = Jobs(new_cache_path, "diskcache")
    try:
        store = jobs._store
        assert store is not None
        with store._lock:
            store._db.executemany("INSERT OR REPLACE INTO jobs (id, status, data) VALUES (?, ?, ?)", rows)
    finally:
        jobs.close()
    reloaded = Jobs(new_cache_path, "diskcache")  # drops rows whose job cannot be rebuilt
    try:
        return len(reloaded)
    finally:
        reloaded.close()


def _readable_rows(path: Path) -> list[tuple[str, str, bytes]]:
    """Every ``(id, status, data)`` row SQLite can still read from the file at ``path``."""
    try:
        db = sqlite3.connect(str(path))
    except sqlite3.DatabaseError:
        return []
    rows: list[tuple[str, str, bytes]] = []
    try:
        try:
            rowids = [r[0] for r in db.execute("SELECT rowid FROM jobs")]
        except sqlite3.DatabaseError:
            rowids = list(range(1, 1 << 16))  # the index is damaged: probe rowids one by one
        misses = 0
        for rowid in rowids:
            try:
                row = db.execute("SELECT id, status, data FROM jobs WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is not None and isinstance(row[2], bytes):
                rows.append((str(row[0]), str(row[1]), row[2]))
                misses = 0
            else:
                misses += 1
                if misses > _MAX_MISSES:
                    break
    finally:
        db.close()
    return rows
