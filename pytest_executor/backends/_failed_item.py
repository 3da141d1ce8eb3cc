"""The reports of an item that cannot finish normally: its worker crashed, timed out or lost it.

Shared by the runners: the controller makes these reports itself, in the
shape pytest would have, so the terminal, junitxml and other plugins show a
failed test (with the worker's output and its captured output) and the run
goes on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import pytest

from executor._kill import signal_name

from pytest_executor.backends._runner import Event, ItemTask

CAPTURE_BYTES = 64 * 1024
"""How much of a crashed test's captured output is recovered."""


def open_capture_files(pid: Any, fds: list[int]) -> list[int]:
    """Open a worker's capture files (by its pid and their descriptors) so a crashed test's output survives it.

    Linux only (``/proc``); elsewhere, or once one fails, the list is short.
    """
    opened: list[int] = []
    for fd in fds:
        try:
            opened.append(os.open(f"/proc/{int(pid)}/fd/{int(fd)}", os.O_RDONLY))
        except (OSError, TypeError, ValueError):
            break
    return opened


def read_capture_files(fds: list[int]) -> tuple[str, str]:
    """The end of what the running test wrote to its captured stdout and stderr (files from :func:`open_capture_files`)."""
    texts = []
    for fd in fds[:2]:
        try:
            size = os.fstat(fd).st_size
            start = max(0, size - CAPTURE_BYTES)
            texts.append(os.pread(fd, size - start, start).decode("utf-8", "replace"))
        except OSError:
            texts.append("")
    texts += [""] * (2 - len(texts))
    return texts[0], texts[1]


class WorkerCaptures:
    """Each worker's capture files: opened once it is ready, read and closed when it ends or crashes.

    Opened on the pool's loop thread as the worker gets its first call (a worker
    that dies at once is gone from ``/proc`` before the controller's thread
    would see it), taken on the controller's: a lock keeps the two apart.
    """

    def __init__(self) -> None:
        self._fds: dict[int, list[int]] = {}
        self._lock = threading.Lock()

    def open(self, wid: int, info: Any) -> None:
        """Open the files named by the ``info`` a worker's session published (its pid and descriptors)."""
        info = info if isinstance(info, dict) else {}
        fds = open_capture_files(info.get("pid"), info.get("capture_fds", []))
        with self._lock:
            self._fds[wid] = fds

    def take(self, wid: int | None) -> tuple[str, str]:
        """The end of what worker ``wid``'s running test wrote; its files are closed."""
        with self._lock:
            fds = self._fds.pop(wid or 0, [])
        try:
            return read_capture_files(fds)
        finally:
            _close_all(fds)

    def close(self) -> None:
        """Close every file still open."""
        with self._lock:
            every, self._fds = list(self._fds.values()), {}
        for fds in every:
            _close_all(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def collected_item(session: pytest.Session | None, task: ItemTask) -> pytest.Item | None:
    """The controller's item of ``task`` (None if the session does not hold it at that index)."""
    items = session.items if session is not None else []
    if 0 <= task.index < len(items) and items[task.index].nodeid == task.nodeid:
        return items[task.index]
    return None


def item_location(session: pytest.Session | None, task: ItemTask) -> tuple[str, int | None, str]:
    """Where ``task``'s item is, as its reports say."""
    item = collected_item(session, task)
    return item.location if item is not None else (task.nodeid.split("::")[0], None, task.nodeid)


def item_report(session: pytest.Session | None, task: ItemTask, when: str, outcome: str, longrepr: str | None,
                sections: list[tuple[str, str]], start: float) -> pytest.TestReport:
    """A report of phase ``when`` of ``task``'s item, located and keyworded like the collected item."""
    item = collected_item(session, task)
    location = item.location if item is not None else (task.nodeid.split("::")[0], None, task.nodeid)
    keywords: dict[str, Any] = {name: 1 for name in item.keywords} if item is not None else {}
    stop = time.time()
    return pytest.TestReport(
        task.nodeid,
        location,
        keywords,
        outcome,  # type: ignore[arg-type]
        longrepr,
        when,  # type: ignore[arg-type]
        sections=sections,
        duration=max(0.0, stop - start) if start else 0.0,
        start=start or stop,
        stop=stop,
        user_properties=[],
    )


def failed_item_events(session: pytest.Session | None, task: ItemTask, worker: str, when: str, message: str,
                       captured: tuple[str, str], start: float, *, started: bool = False) -> list[Event]:
    """The events of an item that failed in phase ``when`` without its worker's reports.

    ``started``: its ``logstart`` was replayed already.  A failure in the
    teardown only adds the failed teardown report (the outcome was known).
    """
    sections = [(f"Captured {name} {when}", text) for name, text in zip(("stdout", "stderr"), captured) if text]
    events: list[Event] = []
    if when != "teardown":
        if not started:
            events.append(("logstart", {"nodeid": task.nodeid, "location": item_location(session, task),
                                        "worker": worker}))
        report = item_report(session, task, when, "failed", message, sections, start)
        events.append(("logreport", {"report": report, "worker": worker}))
        events.append(("result", {"index": task.index, "outcome": "failed", "worker": worker}))
        closing = item_report(session, task, "teardown", "passed", None, [], 0)
        events.append(("logreport", {"report": closing, "worker": worker}))
    else:
        report = item_report(session, task, "teardown", "failed", message, sections, 0)
        events.append(("logreport", {"report": report, "worker": worker}))
    events.append(("done", {"index": task.index, "worker": worker, "start": start or time.time(),
                            "stop": time.time(), "crashed": True}))
    return events


_ENGINE_FRAMES = os.sep + os.path.join("executor", "engine", "backend") + os.sep
"""Frames of the engine's worker loop, dropped from a crashed worker's stack like pytest's own."""


def crash_message(nodeid: str, worker: str, exitcode: int | None, output: str, timeout: float | None, *,
                  replaced: bool = True, teardown: bool = False) -> str:
    """The report of an item whose engine worker died (``timeout``: stopped after that many seconds).

    ``replaced``: a new worker takes its place (not said of one-shot workers);
    ``teardown``: it died while tearing the item down.
    """
    reason = exit_reason(exitcode)
    lines = [line for line in trim_stack_dump(output.rstrip("\n").splitlines())
             if not (line.startswith("  File ") and _ENGINE_FRAMES in line)]
    tail = "\n".join(lines[-60:])
    if timeout is not None:
        head = (f"Timeout: {nodeid} did not finish within {timeout:g} s on worker {worker}; "
                f"the worker was killed ({reason}) and replaced.")
        detail = "Stack of the worker when it was stopped" if "File" in tail else "Last output of the worker"
    else:
        where = "in the teardown of" if teardown else "while running"
        head = f"worker {worker} crashed {where} {nodeid} ({reason})" + ("; the worker was replaced." if replaced else ".")
        detail = "Last output of the worker"
    return head + (f"\n\n{detail}:\n{tail}" if tail.strip() else "")


_MACHINERY = tuple(os.sep + name + os.sep for name in ("pluggy", "_pytest", "pytest", "pytest_executor")) + (
    '"<string>"',
    '"<frozen runpy>"',
)


def trim_stack_dump(lines: list[str]) -> list[str]:
    """Drop pytest/pluggy/worker frames and our lifeline thread from a faulthandler dump."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([])
        blocks[-1].append(line)
    kept: list[str] = []
    for number, block in enumerate(blocks):
        if number and any("in wait_for_eof" in line for line in block):
            continue
        kept += [line for line in block if not (line.startswith("  File ") and any(p in line for p in _MACHINERY))]
    return kept


def exit_reason(returncode: int | None) -> str:
    """Describe how a process ended: ``exit code 3`` or ``killed by signal SIGSEGV``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        name = signal_name(-returncode)  # "signal 99" for a number without a name
        return f"killed by {name}" if name.startswith("signal ") else f"killed by signal {name}"
    return f"exit code {returncode}"
