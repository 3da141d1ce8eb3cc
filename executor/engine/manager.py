"""The jobs manager: every job of an engine, indexed by id and by status, optionally persisted.

With a cache path (``cache_type="diskcache"``) the jobs are also written to an
SQLite database (``<cache_path>/jobs.sqlite``, WAL journal) on every status
change, so a new ``Jobs(cache_path)`` reloads them, even after a crash.

Reload status: a job keeps a final status (``done``, ``failed``,
``cancelled``).  Every non-final status comes back ``cancelled``, because no
engine runs the job any more: ``created`` (handed to an engine, which was
stopped or killed before queueing it), ``pending`` and ``running``.  This holds
after ``kill -9`` in the middle of a write too: each write is one SQLite
transaction (WAL journal), so the store holds the job as it was before or after
that write, never half of it.  Rerun a reloaded job to start it again.

The store file is created ``0600``.  A file SQLite cannot read raises
the :class:`JobStoreCorruptError` naming it;
:func:`executor.engine.store_recovery.recover_job_store` copies the
readable jobs into a new store, and the original file is never modified.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import typing as T
from pathlib import Path

from .job.base import Job
from .job.utils import ACTIVE_STATUSES, FINISHED_STATUSES, JOB_STATUSES, JobStatusType, valid_job_statuses
from .utils import ExecutorError
from .log import logger

__all__ = ["Jobs", "JobStore", "JobNotFoundError", "JobStatusType", "JobStoreCorruptError"]

DB_NAME = "jobs.sqlite"


class JobNotFoundError(ExecutorError, KeyError):
    """No job with this id (``Jobs.get_job_by_id``); a ``KeyError`` too."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r} in this jobs manager")

    def __str__(self) -> str:
        return str(self.args[0])


class JobStore(T.Mapping[str, Job]):
    """The jobs in one status: ``len``, ``in``, iteration over ids, ``values()``/``keys()``/``items()`` (lists).

    The stores of a :class:`Jobs` manager (``jobs.pending``, ...) are live
    views kept by the manager.  ``JobStore(cache_path)`` alone is a store of
    its own (as upstream), persisted in ``cache_path`` when one is given.
    """

    def __init__(self, cache_path: T.Union[str, Path, None] = None, *, status: str = "",
                 data: T.Optional[dict[str, Job]] = None, owner: T.Optional["Jobs"] = None) -> None:
        self.status = status
        self._data: dict[str, Job] = data if data is not None else {}
        self._owner = owner
        self._own_cache: T.Optional[_SqliteStore] = None
        if cache_path is not None and owner is None:
            self._own_cache = _SqliteStore(Path(cache_path) / DB_NAME)

    @classmethod
    def load_from_cache(cls, path: T.Union[str, Path]) -> "JobStore":
        """A store persisted in ``path``, with the jobs it holds loaded."""
        store = cls(path)
        store.update_from_cache()
        return store

    @property
    def mem(self) -> dict[str, Job]:
        """The jobs, by id (the live dict: do not change it directly)."""
        return self._data

    @property
    def cache(self) -> T.Optional["_SqliteStore"]:
        """The persistent store behind this one (None: in memory only)."""
        return self._owner._store if self._owner is not None else self._own_cache

    def update_from_cache(self, clear_old: bool = False) -> None:
        """Load the persisted jobs of this store (``clear_old``: forget the others first)."""
        if self._owner is not None:
            self._owner.update_from_cache(clear_old)
            return
        if clear_old:
            self._data.clear()
        if self._own_cache is not None:
            for job_id, _status, data in self._own_cache.load():
                self._data[job_id] = Job.deserialization(data)

    def get_from_cache(self, key: str) -> Job:
        """The job ``key`` as persisted (raises :class:`JobNotFoundError` if it is not)."""
        cache = self.cache
        if cache is None:
            raise RuntimeError("this job store has no persistent cache")
        for job_id, _status, data in cache.load():
            if job_id == key:
                return Job.deserialization(data)
        raise JobNotFoundError(key)

    def set_to_cache(self, key: str, val: Job) -> None:
        """Persist job ``val`` (no-op without a cache)."""
        cache = self.cache
        if cache is not None:
            cache.save(val)

    def __getitem__(self, key: str) -> Job:
        return self._data[key]

    def __setitem__(self, key: str, val: Job) -> None:
        if self._owner is not None:
            self._owner._put(val, self.status)
            return
        self._data[key] = val
        self.set_to_cache(key, val)

    def pop(self, key: str) -> Job:
        """Remove job ``key`` from the store and return it."""
        job = self._data[key]
        if self._owner is not None:
            self._owner._drop([job])
        else:
            del self._data[key]
            if self._own_cache is not None:
                self._own_cache.delete([key])
        return job

    def clear(self) -> None:
        """Remove every job of this store."""
        if self._owner is not None:
            self._owner._drop(list(self._data.values()))
        else:
            keys = list(self._data)
            self._data.clear()
            if self._own_cache is not None:
                self._own_cache.delete(keys)

    def __iter__(self) -> T.Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Job):
            key = key.id
        return key in self._data

    def values(self) -> list[Job]:  # type: ignore[override]
        """The jobs (a list, as upstream: ``jobs.running.values() + jobs.pending.values()`` works)."""
        return list(self._data.values())

    def keys(self) -> list[str]:  # type: ignore[override]
        """The job ids (a list)."""
        return list(self._data)

    def items(self) -> list[tuple[str, Job]]:  # type: ignore[override]
        """``(id, job)`` pairs (a list)."""
        return list(self._data.items())

    def __repr__(self) -> str:
        return f"<JobStore {self.status}: {len(self._data)} jobs>"


class JobStoreCorruptError(RuntimeError):
    """The job store file cannot be read by SQLite (it was left untouched)."""

    def __init__(self, path: Path, error: Exception) -> None:
        self.path = path
        super().__init__(
            f"the job store {path} cannot be read ({error}); it was left untouched. Recover the readable "
            f"jobs into a new store with executor.engine.store_recovery.recover_job_store({str(path)!r}, <new cache dir>), "
            "or move the file away to start empty"
        )


class _SqliteStore:
    """Crash-safe persistence of serialized jobs (one row per job)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # private from the start: SQLite gives its -wal/-shm files the mode of the database file
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, data BLOB NOT NULL)")
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise JobStoreCorruptError(path, error) from None

    def load(self) -> list[tuple[str, str, bytes]]:
        with self._lock:
            try:
                return list(self._db.execute("SELECT id, status, data FROM jobs"))
            except sqlite3.DatabaseError as error:
                raise JobStoreCorruptError(self.path, error) from None

    def save(self, job: Job) -> None:
        try:
            data = job.serialization()
        except Exception as exc:
            logger.warning(f"job {job.id} cannot be persisted: {exc!r}")
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO jobs (id, status, data) VALUES (?, ?, ?)",
                             (job.id, job.status, data))

    def delete(self, job_ids: T.Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Jobs:
    """All jobs of an engine.

    ``pending``, ``running``, ``done``, ``failed``, ``cancelled`` (and
    ``created``) are live :class:`JobStore` views; iterating a ``Jobs`` yields
    the jobs themselves.

    Args:
        cache_path: directory of the persistent store; giving one turns
            persistence on unless ``cache_type="none"``.
        cache_type: ``"diskcache"`` (persistent, needs ``cache_path``) or ``"none"``.
    """

    def __init__(self, cache_path: T.Union[str, Path, None] = None,
                 cache_type: T.Optional[str] = None) -> None:
        if cache_type is None:
            cache_type = "diskcache" if cache_path is not None else "none"
        if cache_type not in ("none", "diskcache"):
            raise ValueError(f"cache_type must be 'none' or 'diskcache', got {cache_type!r}")
        if cache_type == "diskcache" and cache_path is None:
            raise ValueError("cache_type='diskcache' needs a cache_path")
        self.cache_type = cache_type
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._all: dict[str, Job] = {}
        self._by_status: dict[str, dict[str, Job]] = {s: {} for s in JOB_STATUSES}
        self.set_attrs_for_read()
        self._store: T.Optional[_SqliteStore] = None
        if cache_type == "diskcache":
            assert self.cache_path is not None
            self._store = _SqliteStore(self.cache_path / DB_NAME)
            self._reload()

    created: JobStore
    pending: JobStore
    running: JobStore
    done: JobStore
    failed: JobStore
    cancelled: JobStore
    valid_statuses: T.ClassVar[list[JobStatusType]] = list(valid_job_statuses)
    """The statuses of submitted jobs (upstream's list; ``created`` jobs have a view too)."""

    def set_attrs_for_read(self) -> None:
        """(Re)make the per-status views ``created``, ``pending``, ``running``, ``done``, ``failed``, ``cancelled``."""
        for status in JOB_STATUSES:
            setattr(self, status, JobStore(status=status, data=self._by_status[status], owner=self))

    # ------------------------------------------------------------- queries
    def get_job_by_id(self, job_id: str) -> Job:
        """The job with this id; raises :class:`JobNotFoundError` (a KeyError) if there is none."""
        job = self._all.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def get(self, job_id: str) -> T.Optional[Job]:
        """The job with this id, or None."""
        return self._all.get(job_id)

    def all_jobs(self) -> list[Job]:
        """Every job, in insertion order."""
        return list(self._all.values())

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> T.Iterator[Job]:
        return iter(list(self._all.values()))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Job):
            item = item.id
        return item in self._all

    @property
    def active_count(self) -> int:
        """Number of pending plus running jobs."""
        return len(self._by_status["pending"]) + len(self._by_status["running"])

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(d)}" for s, d in self._by_status.items() if d)
        return f"<Jobs {counts or 'empty'}>"

    # ------------------------------------------------------------ updates
    def add(self, job: Job) -> None:
        """Register a job under its current status."""
        self._all[job.id] = job
        self._by_status[job.status][job.id] = job
        if self._store is not None:
            self._store.save(job)

    def moved(self, job: Job, old: JobStatusType) -> None:
        """Re-index a job whose status changed from ``old`` (called by the engine)."""
        if self._by_status[old].pop(job.id, None) is None:
            return
        self._by_status[job.status][job.id] = job
        if self._store is not None:
            self._store.save(job)

    def set_status_many(self, jobs: T.Iterable[Job], status: JobStatusType) -> None:
        """Give each job ``status`` and re-index it (the engine's bulk form of ``moved``)."""
        by_status = self._by_status
        target = by_status[status]
        store = self._store
        for job in jobs:
            old, job._status = job._status, status
            if by_status[old].pop(job.id, None) is not None:
                target[job.id] = job
                if store is not None:
                    store.save(job)

    def move_job_store(self, job: Job, new_status: JobStatusType,
                       old_status: T.Optional[JobStatusType] = None) -> None:
        """Give ``job`` status ``new_status`` and re-index it (``old_status``: the one it is indexed under)."""
        old = old_status if old_status is not None else job.status
        if old == new_status:
            return
        job._status = new_status
        self.moved(job, old)

    def set_engine(self, engine: T.Any) -> None:
        """Attach every job to ``engine`` (e.g. after reloading them from the store)."""
        for job in self._all.values():
            job.engine = engine

    def clear(self, statuses: T.Iterable[JobStatusType]) -> None:
        """Forget the jobs in the given statuses (pending/running ones must be cancelled first)."""
        statuses = list(statuses)
        for status in statuses:
            if status not in self._by_status:
                raise ValueError(f"unknown job status {status!r}; valid: {list(JOB_STATUSES)}")
        active = [s for s in statuses if s in ACTIVE_STATUSES and self._by_status[s]]
        if active:
            raise ValueError(f"jobs are still {' and '.join(active)}: cancel them before clearing them")
        self._drop([job for status in statuses for job in self._by_status[status].values()])

    def update_from_cache(self, clear_old: bool = True) -> None:
        """Reload the jobs from the persistent store (``clear_old``: forget the finished jobs held in memory first)."""
        if self._store is None:
            return
        if clear_old:
            for job in [j for j in self._all.values() if j.status not in ACTIVE_STATUSES]:
                self._all.pop(job.id, None)
                self._by_status[job.status].pop(job.id, None)
        self._reload()

    def _put(self, job: Job, status: str) -> None:
        """Index ``job`` under ``status`` (a store's ``__setitem__``)."""
        old = self._all.get(job.id)
        if old is not None:
            self._by_status[old.status].pop(job.id, None)
        self._all[job.id] = job
        self._by_status[status][job.id] = job
        if self._store is not None:
            self._store.save(job)

    def save(self, job: Job) -> None:
        """Persist a job's current state (no-op without a store)."""
        if self._store is not None and job.id in self._all:
            self._store.save(job)

    def remove(self, job: Job) -> None:
        """Forget a job (it must not be pending or running)."""
        if job.status in ACTIVE_STATUSES:
            raise ValueError(f"job {job.id} is {job.status}; cancel it before removing it")
        self._drop([job])

    def clear_done(self) -> None:
        """Forget the done jobs."""
        self._drop(list(self.done.values()))

    def clear_failed(self) -> None:
        """Forget the failed jobs."""
        self._drop(list(self.failed.values()))

    def clear_cancelled(self) -> None:
        """Forget the cancelled jobs."""
        self._drop(list(self.cancelled.values()))

    def clear_non_active(self) -> None:
        """Forget every job that is not pending or running."""
        self._drop([j for j in self._all.values() if j.status not in ACTIVE_STATUSES])

    def clear_all(self) -> None:
        """Forget every job that is not pending or running (active jobs are kept)."""
        self.clear_non_active()

    def close(self) -> None:
        """Close the persistent store, if any."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _drop(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._all.pop(job.id, None)
            self._by_status[job.status].pop(job.id, None)
        if self._store is not None and jobs:
            self._store.delete(j.id for j in jobs)

    def _reload(self) -> None:
        assert self._store is not None
        for job_id, status, data in self._store.load():
            try:
                job = Job.deserialization(data)
            except Exception as exc:
                logger.warning(f"cannot reload job {job_id} from {self._store.path}: {exc!r}")
                continue
            held = self._all.get(job.id)
            if held is not None and held.status in ACTIVE_STATUSES:
                continue  # live in memory: the stored copy is older
            if job.status not in FINISHED_STATUSES or status not in FINISHED_STATUSES:
                job._status = "cancelled"  # see the module docstring: nothing runs it any more
            if held is not None:
                self._by_status[held.status].pop(job.id, None)
            self._all[job.id] = job
            self._by_status[job.status][job.id] = job
            if job.status != status:
                self._store.save(job)
