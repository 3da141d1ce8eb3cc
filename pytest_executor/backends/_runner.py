"""The contract between the controller and the backends that run test items.

The controller (in the pytest process, main thread) owns the dependency graph
and decides *when* an item may run.  A runner decides *where*: it hands the item
to a worker (a warm process, a fresh subprocess, a dask worker, ...) and streams
back what happened as plain ``(name, kwargs)`` events.  The controller replays
those events through pytest's own hooks, so the terminal, ``-x``, ``--lf``,
junitxml and other plugins see ordinary reports.

Events a runner yields from :meth:`Runner.next_events`:

``("logstart", {"nodeid": str, "location": tuple[str, int | None, str], "worker": str})``
    the item started on ``worker``; replayed as ``pytest_runtest_logstart``.
``("logreport", {"report": TestReport, "worker": str})``
    one phase report, already deserialized with ``pytest_report_from_serializable``;
    replayed as ``pytest_runtest_logreport``.
``("result", {"index": int, "outcome": "passed" | "failed" | "skipped", "worker": str})``
    the outcome that dependents care about is known (after the call phase, or a
    failed/skipped setup).  The controller may release dependents now, even if
    the item's teardown is deferred until the worker learns its next item.
``("done", {"index": int, "worker": str, "start": float, "stop": float, "crashed": bool})``
    every report of the item has been sent (``start``/``stop`` are ``time.time()``
    wall-clock seconds); replayed as ``pytest_runtest_logfinish``.
``("worker_lost", {"worker": str, "reason": str})``
    informational: a worker died and was (or will be) replaced.  The item it was
    running has already been turned into failed ``logreport`` events + ``result``
    + ``done`` by the runner.
``("error", {"message": str})``
    a fatal problem (collection mismatch, unreachable cluster, ...); the
    controller aborts the run with ``pytest.UsageError``-style output.
``("warning", {"warning_message": warnings.WarningMessage, "when": "runtest", "nodeid": str, "location": tuple | None})``
    a warning recorded while a test ran on a worker; replayed with
    ``config.hook.pytest_warning_recorded.call_historic(kwargs=...)`` so the
    warnings summary matches a serial run.  Like any event kind, a controller
    may ignore it and stay correct, which keeps new kinds compatible.
``("exit", {"message": str, "returncode": int | None})``
    a test called ``pytest.exit()`` on a worker; the controller ends the run
    the same way (the worker's session ends too, which is not a crash).
``("interrupt", {})``
    a test raised ``KeyboardInterrupt`` on a worker; the controller stops the
    run as on Ctrl-C (exit code 2, every worker stopped).
``("finished", {})``
    returned by :meth:`Runner.next_events` once :meth:`Runner.finish` (or
    :meth:`Runner.kill`) completed; every later call returns it again.

Workers of the ``process``/``subprocess``/``dask`` backends are sessions of
:mod:`pytest_executor.backends.worker`, hosted on the engine's process pool
(:mod:`pytest_executor.backends._hosted`); their messages are described in
:mod:`pytest_executor.backends._protocol`.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

Event = tuple[str, dict[str, Any]]
"""A plain ``(name, kwargs)`` message from a runner to the controller."""


@dataclass(frozen=True)
class ItemTask:
    """One attempt at running one collected item on a runner."""

    index: int
    """Position of the item in ``session.items`` (workers collect the same list)."""
    nodeid: str
    timeout: float | None = None
    """Seconds before the worker running it is killed and the item fails."""
    exclusive: bool = False
    """Nothing else may run on the same machine/host while this item runs."""
    attempt: int = 1
    worker: str | None = None
    """Run it on this worker if it is still alive: a retry goes where the failed
    attempt ran, which holds that attempt's teardown until it learns its next task."""


class Runner(Protocol):
    """A backend that runs items somewhere other than the controller's main thread."""

    name: str
    defers_teardown: bool
    """Its workers tear an item down only once they know their next task (or
    are told to shut down): a retry is submitted as soon as the failed
    attempt's result is known, with ``ItemTask.worker`` naming that worker."""

    def start(self, session: pytest.Session) -> None:
        """Start (or connect to) the workers; may return before they are ready."""

    def free_slots(self) -> int:
        """How many more tasks the runner can accept right now."""

    def submit(self, task: ItemTask) -> None:
        """Hand one task to a worker; never blocks on the task itself."""

    def next_events(self, timeout: float | None) -> list[Event]:
        """Block up to ``timeout`` seconds for events; return all that are ready."""

    def finish(self) -> None:
        """No more tasks will come: let workers run deferred teardowns and exit.

        Events produced while finishing are still returned by :meth:`next_events`
        until it returns ``[("finished", {})]``.
        """

    def kill(self) -> None:
        """Abort now (Ctrl-C, ``-x``): kill every worker and child process."""


def warning_event(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a worker's warning as the ``pytest_warning_recorded`` hook arguments."""
    category: type[Warning] = UserWarning
    module_name, _, qualname = str(kwargs.get("category", "")).partition(":")
    with contextlib.suppress(Exception):
        module = sys.modules.get(module_name) or __import__(module_name, fromlist=["_"])
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    message = warnings.WarningMessage(
        category(kwargs.get("message", "")), category, kwargs.get("filename", ""), kwargs.get("lineno", 0)
    )
    location = kwargs.get("location")
    return {
        "warning_message": message,
        "when": kwargs.get("when", "runtest"),
        "nodeid": kwargs.get("nodeid", ""),
        "location": tuple(location) if location else None,
    }


def collection_mismatch(worker: str, controller_ids: list[str], ids: list[str], known: Container[str]) -> str | None:
    """The fatal error of a worker whose collection (``ids``, ``known`` with its deselected) lacks an item, else None."""
    for i, nodeid in enumerate(controller_ids):
        if nodeid not in known:
            theirs = ids[i] if i < len(ids) else "<nothing>"
            return (f"collection mismatch: worker {worker} did not collect what the controller did; "
                    f"first differing id at position {i}: controller has {nodeid!r}, worker has {theirs!r} "
                    f"(controller collected {len(controller_ids)} items, worker {len(ids)})")
    return None
