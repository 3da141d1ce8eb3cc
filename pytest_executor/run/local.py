"""Running one item in the pytest process: retries, and the call phase on a thread.

The ``local`` and ``thread`` backends use pytest's own phases
(``call_and_report``) so fixtures, capture, reports and other plugins behave as
in plain pytest.  Extras over ``runtestprotocol``:

* ``retries``: a failed attempt is torn down (function-scoped fixtures only) and
  run again; reports of attempts that will be retried are not logged, so the
  terminal, ``-x`` and junitxml see only the final attempt.  Every attempt is
  returned for the JSON report.
* ``on_thread``: the call phase runs on a helper thread; with a ``timeout`` a
  hung test fails after that many seconds without any signal (the thread is
  abandoned — it is a daemon and keeps running until it returns).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from _pytest.runner import call_and_report

Reports = list[pytest.TestReport]


def run_attempts(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    *,
    retries: int = 0,
    timeout: float | None = None,
    on_thread: bool = False,
    before_retry: Callable[[Reports], None] | None = None,
) -> list[Reports]:
    """Run ``item`` up to ``retries + 1`` times; return the reports of each attempt.

    Only the last attempt's reports are logged (``pytest_runtest_logreport``).
    The caller sends ``pytest_runtest_logstart``/``logfinish``.
    ``before_retry`` gets the reports of each attempt that is run again.
    """
    attempts: list[Reports] = []
    for number in range(retries + 1):
        reports, again = run_attempt(
            item, nextitem, may_retry=number < retries, timeout=timeout, on_thread=on_thread
        )
        attempts.append(reports)
        if not again:
            break
        if before_retry is not None:
            before_retry(reports)
    return attempts


def run_attempt(
    item: pytest.Item,
    nextitem: pytest.Item | None,
    *,
    may_retry: bool,
    timeout: float | None,
    on_thread: bool,
) -> tuple[Reports, bool]:
    """One setup/call/teardown; return its reports and whether to run it again."""
    session = item.session
    if hasattr(item, "_request") and not item._request:
        item._initrequest()  # type: ignore[attr-defined]  # a rerun needs a fresh request
    log_now = not may_retry  # while a retry is possible, hold the reports back
    try:
        reports = [call_and_report(item, "setup", log_now)]
        if reports[0].passed and not item.config.getoption("setuponly", False):
            with _call_on_thread(item, timeout) if on_thread else _nothing():
                reports.append(call_and_report(item, "call", log_now))
        stopping = bool(session.shouldfail or session.shouldstop)
        again = may_retry and any(report.failed for report in reports) and not stopping
        if may_retry and not again:
            for report in reports:
                item.ihook.pytest_runtest_logreport(report=report)
        # Between attempts keep the class/module fixtures: tear down only the item.
        teardown_next: Any = item.parent if again else nextitem
        if session.shouldfail or session.shouldstop:  # -x: tear everything down now
            teardown_next = None
        reports.append(call_and_report(item, "teardown", not again, nextitem=teardown_next))
    finally:
        if hasattr(item, "_request"):
            item._request = False
            item.funcargs = None  # type: ignore[attr-defined]
    return reports, again


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _call_on_thread(item: pytest.Item, timeout: float | None) -> Iterator[None]:
    """Make ``item.runtest`` run on a daemon thread, failing after ``timeout`` s."""
    original = cast(Callable[[], None], item.runtest)

    def runtest_on_thread() -> None:
        errors: list[BaseException] = []

        def target() -> None:
            try:
                original()
            except BaseException as error:  # re-raised in the pytest thread
                errors.append(error)

        thread = threading.Thread(target=target, name=f"executor:{item.nodeid}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            pytest.fail(
                f"timed out after {timeout:g}s (job timeout); the test's thread was abandoned",
                pytrace=False,
            )
        if errors:
            raise errors[0]

    setattr(item, "runtest", runtest_on_thread)
    try:
        yield
    finally:
        delattr(item, "runtest")


def outcome_of(reports: Reports) -> tuple[str, str]:
    """Status (see :data:`pytest_executor.views.report.STATUSES`) and message of one attempt.

    Setup and call decide; a failing teardown turns a pass into ``error``.
    """
    status, message = "passed", ""
    for report in reports:
        wasxfail = getattr(report, "wasxfail", None)
        if report.when == "teardown":
            if report.failed and status in ("passed", "xpassed"):
                return "error", _first_line(report)
            continue
        if report.failed:
            return ("error" if report.when == "setup" else "failed"), _first_line(report)
        if report.skipped:
            if wasxfail is not None:
                return "xfailed", str(wasxfail)
            return "skipped", _first_line(report)
        if report.when == "call" and wasxfail is not None:
            status = "xpassed"
    return status, message


AttemptSummary = tuple[str, float, str]
"""An attempt as the job table records it: status, duration (s), message."""


def summarize_attempt(reports: Reports) -> AttemptSummary:
    """The status, duration and message of one attempt's reports."""
    status, message = outcome_of(reports)
    return status, sum(report.duration for report in reports), message


def _first_line(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        text = str(longrepr[2])
        return text[len("Skipped: ") :] if text.startswith("Skipped: ") else text
    crash = getattr(getattr(longrepr, "reprcrash", None), "message", None)
    if crash:
        return str(crash).splitlines()[0]
    lines = str(longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""
