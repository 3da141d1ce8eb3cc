"""Job records of a run, the end-of-run table and the JSON report.

One :class:`JobRecord` per selected test, kept in ``config.stash[RUN_KEY]``
(a :class:`RunRecord`) by the controller.  Other features extend the records by
subclassing or by adding to :attr:`JobRecord.extra` / :attr:`RunRecord.metadata`
(everything in them must be JSON-serialisable).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import pytest

STATUSES: Final = (
    "created", "pending", "running",
    "passed", "failed", "error", "skipped", "xfailed", "xpassed", "cancelled",
)
"""Life of a test job: the first three while it runs, then its outcome.

``cancelled`` means it never ran (the run stopped first, e.g. ``-x``)."""

OK_STATUSES: Final = frozenset({"passed", "xpassed"})
"""Outcomes that let dependents run."""

TABLE_HEADERS: Final = ("test", "backend", "worker", "status", "attempts", "duration", "wait", "after")
NARROW_HEADERS: Final = ("test", "backend", "worker", "status", "tries", "time", "wait", "after")
"""The same columns with shorter headers, for tables fitted to the terminal width."""


@dataclass
class AttemptRecord:
    """One attempt at running a test (``retries=`` makes several)."""

    attempt: int
    status: str
    duration: float
    """Sum of the setup, call and teardown durations, in seconds."""
    worker: str
    message: str = ""
    """First line of the failure or skip reason, if any."""


@dataclass
class JobRecord:
    """What happened to one test job; also the ``job`` passed to the plugin's hooks."""

    test: str
    """The node id."""
    backend: str
    after: list[str] = field(default_factory=list)
    """Node ids this test ran after."""
    retries: int = 0
    timeout: float | None = None
    exclusive: bool = False
    group: str = ""
    """Tests sharing a group run one after another on one worker (xdist ``--dist loadfile``...)."""
    status: str = "created"
    worker: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    ready: float | None = None
    """``time.time()`` when its dependencies were done."""
    start: float | None = None
    stop: float | None = None
    duration: float = 0.0
    """Seconds spent in the final attempt's phases."""
    wait: float = 0.0
    """Seconds between dependencies done (or the run start) and the test starting."""
    message: str = ""
    """Why it failed or was skipped (first line)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Room for other features' per-job data (JSON-serialisable)."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the record."""
        return asdict(self)


@dataclass
class RunRecord:
    """Every job of the run plus run metadata; lives in ``config.stash[RUN_KEY]``."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def as_dict(self, exitstatus: int | None = None) -> dict[str, Any]:
        """The JSON form of the run: ``{"metadata": ..., "jobs": [...]}``."""
        metadata = dict(self.metadata)
        metadata.setdefault("started", self.started)
        metadata["duration"] = round(time.time() - self.started, 6)
        if exitstatus is not None:
            metadata["exitstatus"] = int(exitstatus)
        metadata["counts"] = count_statuses(self.jobs.values())
        return {"metadata": metadata, "jobs": [job.as_dict() for job in self.jobs.values()]}


RUN_KEY: Final = pytest.StashKey[RunRecord]()
"""Where the controller keeps the records of the run."""


def run_metadata(config: pytest.Config, **extra: Any) -> dict[str, Any]:
    """Metadata of a run for the JSON report."""
    from pytest_executor import __version__

    return {
        "pytest_executor": __version__,
        "pytest": pytest.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "args": list(config.invocation_params.args),
        "rootdir": str(config.rootpath),
        **extra,
    }


def count_statuses(jobs: Iterable[JobRecord]) -> dict[str, int]:
    """``{status: number of jobs}`` for the statuses that occur."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def _short(nodeid: str, relative_to: str) -> str:
    module = relative_to.split("::", 1)[0]
    return nodeid[len(module) + 2 :] if nodeid.startswith(module + "::") else nodeid


def job_rows(jobs: Iterable[JobRecord]) -> list[list[str]]:
    """One table row per job, in :data:`TABLE_HEADERS` order."""
    return [
        [
            job.test,
            job.backend,
            job.worker,
            job.status,
            str(len(job.attempts)),
            f"{job.duration:.2f}s",
            f"{job.wait:.2f}s",
            ", ".join(_short(dep, job.test) for dep in job.after),
        ]
        for job in jobs
    ]


def summary_rows(jobs: Sequence[JobRecord], *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per backend (plus a total): counts, attempts, busy time.

    ``compact`` leaves out the status columns that would be all zeros.
    """
    shown: tuple[str, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "cancelled")
    if compact:
        occurring = count_statuses(jobs)
        shown = tuple(status for status in shown if occurring.get(status))
    headers = ["backend", "jobs", *shown, "attempts", "busy", "workers"]
    groups: dict[str, list[JobRecord]] = {}
    for job in jobs:
        groups.setdefault(job.backend, []).append(job)
    if len(groups) > 1:
        groups["total"] = list(jobs)
    rows = []
    for backend, members in groups.items():
        counts = count_statuses(members)
        workers = {job.worker for job in members if job.worker}
        rows.append([
            backend,
            str(len(members)),
            *(str(counts.get(status, 0)) for status in shown),
            str(sum(len(job.attempts) for job in members)),
            f"{sum(job.duration for job in members):.2f}s",
            str(len(workers)),
        ])
    return headers, rows


def render_table(run: RunRecord, mode: str, width: int | None = None, *, full: bool = False) -> str:
    """The job table for ``--executor-table=mode`` (``""`` for ``none``/no jobs).

    With a ``width`` the table fits it: the summary shows only the statuses that
    occur, long ``after`` lists fold parametrised instances (``test_x[…] ×5``)
    and are cut, and node ids are shortened from the left.  ``full`` (``-v``)
    keeps every cell whole.
    """
    from tabulate import tabulate

    from pytest_executor.views._fit import abbreviate_names, fit_columns, render_simple

    jobs = list(run.jobs.values())
    if mode == "none" or not jobs:
        return ""
    if mode == "summary":
        headers, rows = summary_rows(jobs)
        text = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
        if width is None or full or _fits(text, width):
            return text
        headers, rows = summary_rows(jobs, compact=True)
        return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    if mode == "failed":
        jobs = [job for job in jobs if job.status in ("failed", "error", "cancelled")]
        if not jobs:
            return "no failed jobs"
    rows = job_rows(jobs)
    text = tabulate(rows, headers=TABLE_HEADERS, tablefmt="simple", disable_numparse=True)
    if width is None or full or _fits(text, width):
        return text
    for row, job in zip(rows, jobs):
        row[-1] = abbreviate_names([_short(dep, job.test) for dep in job.after])
    headers = list(NARROW_HEADERS)
    if len({job.backend for job in jobs}) == 1:  # the summary names it; the width goes to the ids
        headers.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    last = len(headers) - 1
    rows = fit_columns(headers, rows, width, shrink=[(last, "right", 16), (0, "left", 24), (last, "right", 5)])
    return render_simple(headers, rows)


def _fits(text: str, width: int) -> bool:
    return all(len(line) <= width for line in text.splitlines())


def writable_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written (checked before the run, creating nothing), else ``None``."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        return "it is a directory"
    if os.path.exists(target):
        return None if os.access(target, os.W_OK) else "the file is not writable"
    parent = os.path.dirname(target)
    while not os.path.exists(parent):  # write_json creates the missing directories
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    return None


def write_json(run: RunRecord, path: str | os.PathLike[str], exitstatus: int | None) -> None:
    """Write the run as JSON to ``path`` (atomically: a partial file never appears)."""
    data = run.as_dict(exitstatus)
    target = os.fspath(path)
    directory = os.path.dirname(target)
    if directory:
        os.makedirs(directory, exist_ok=True)
    temporary = f"{target}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=2, default=str)
        stream.write("\n")
    os.replace(temporary, target)
