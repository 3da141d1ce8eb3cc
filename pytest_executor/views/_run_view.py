"""Seeing the run: the pytest side of live progress, the timeline and the critical path.

:class:`RunView` is a plugin object the plugin registers when it is active.  It
only listens to hooks that the controller replays for every backend
(``pytest_runtest_logstart`` / ``logreport`` / ``logfinish``), so no backend
needs to know about it:

* it drives the live :mod:`~pytest_executor.views._progress` display (interactive
  terminals only) around ``pytest_runtestloop``;
* it notes each item's phase durations and times, joins them with the
  controller's job records (worker, wait, dependencies) into
  :class:`~pytest_executor.views._critical_path.JobSpan` records;
* at the end it writes ``--executor-timeline`` and adds the critical-path lines
  to the terminal summary, after the job table.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import pytest

from pytest_executor.config.options import IN_PROCESS_BACKENDS
from pytest_executor.views._fit import shorten_left
from pytest_executor.views._critical_path import CriticalPath, JobSpan, critical_path
from pytest_executor.views._progress import LiveProgress, start_live_progress
from pytest_executor.views._timeline import format_seconds, write_timeline
from pytest_executor.views.report import RUN_KEY, JobRecord

IN_PROCESS_WORKER = "main"
"""Lane name of jobs run in the pytest process when the controller names none."""

_MAX_CHAIN_LINES = 10  # critical-path jobs listed in the terminal summary
_CLOCK_SKEW = 60.0  # seconds a worker's clock (a remote dask worker's) may differ from ours


@dataclass
class _Phases:
    """What the reports of one item said (the final attempt only is logged)."""

    durations: dict[str, float] = field(default_factory=dict)
    start: float | None = None
    """When setup began (``time.time()`` of the worker)."""
    verdict: float | None = None
    """When the setup/call outcome was known: what dependents wait for."""
    outcome: str = "passed"

    @property
    def stop(self) -> float | None:
        """End of the job's work.

        A worker may defer an item's teardown until it learns its next item
        (or the run ends), so the teardown's own clock says little: its duration
        is added right after the outcome instead.
        """
        if self.verdict is None:
            return None
        return self.verdict + self.durations.get("teardown", 0.0)


@final
class RunView:
    """Registered by the plugin when active; see the module docstring."""

    def __init__(
        self, config: pytest.Config, *, timeline: str | None = None, summary: bool = True
    ) -> None:
        """``timeline``: path to write; ``summary``: print the critical path."""
        self._config = config
        self._timeline = timeline
        self._summary = summary
        self._phases: dict[str, _Phases] = {}
        self._live: LiveProgress | None = None
        self._started: dict[str, str] = {}  # nodeid -> worker, for on_finish
        self._written: Path | None = None
        self._write_error = ""
        self._opened = time.time()

    # -- live progress ------------------------------------------------------
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Show live progress while the items run; erase it before the summary."""
        if session.items and not session.config.option.collectonly:
            self._live = start_live_progress(self._config, total=len(session.items))
        try:
            return (yield)
        finally:
            self._close_live()

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        """An item started (on the controller or replayed from a worker)."""
        worker = self._worker_of(nodeid)
        self._started[nodeid] = worker
        if self._live is not None:
            self._live.on_start(nodeid, worker)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note the phase's duration, times and outcome."""
        phases = self._phases.setdefault(report.nodeid, _Phases())
        # Subtests send several call reports that all lie within the one call.
        phases.durations[report.when] = max(
            phases.durations.get(report.when, 0.0), float(report.duration or 0.0)
        )
        start, stop = getattr(report, "start", 0.0), getattr(report, "stop", 0.0)
        if start and stop and report.when != "teardown" and self._within_run(start, stop):
            phases.start = start if phases.start is None else min(phases.start, start)
            phases.verdict = stop if phases.verdict is None else max(phases.verdict, stop)
        phases.outcome = _merge_outcome(phases.outcome, report)

    def _within_run(self, start: float, stop: float) -> bool:
        """Whether a report's clock times can belong to this run.

        A test that freezes or fakes the clock (freezegun, time-machine) makes
        pytest stamp its reports with that clock: such a span is left out, and
        the controller's record of the job stands instead.
        """
        return self._opened - _CLOCK_SKEW <= start <= stop <= time.time() + _CLOCK_SKEW

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """An item is over: the worker goes idle."""
        worker = self._started.pop(nodeid, None) or self._worker_of(nodeid)
        if self._live is not None:
            phases = self._phases.get(nodeid, _Phases())
            self._live.on_finish(
                nodeid, worker, phases.outcome, sum(phases.durations.values())
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C: get the region off the screen before pytest prints why it stopped."""
        self._close_live()

    def _close_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.close()

    # -- end of run ---------------------------------------------------------
    def pytest_sessionfinish(self) -> None:
        """Write the timeline (also when the terminal reporter is disabled)."""
        self._close_live()
        if self._timeline and not self._config.option.collectonly:
            try:
                self._written = write_timeline(self._timeline, self.spans())
            except OSError as error:
                self._write_error = f"executor timeline: cannot write {self._timeline}: {error}"

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Critical-path lines after the job table; where the timeline went."""
        spans = self.spans()
        if self._summary and spans:
            full = self._config.option.verbose > 0
            width = None if full else getattr(getattr(terminalreporter, "_tw", None), "fullwidth", None)
            for line in critical_path_lines(critical_path(spans), width):
                terminalreporter.write_line(line)
            rest = worker_time_line(spans)
            if rest is not None:
                terminalreporter.write_line(rest)
        if self._written is not None:
            terminalreporter.write_line(f"executor timeline: {self._written}")
        if self._write_error:
            terminalreporter.write_line(self._write_error, red=True)

    def spans(self) -> list[JobSpan]:
        """One span per item that ran, in the order they started."""
        records = self._job_records()
        spans = [
            span
            for nodeid, phases in self._phases.items()
            if (span := _span(nodeid, phases, records.get(nodeid))) is not None
        ]
        spans.sort(key=lambda s: (s.start, s.nodeid))
        return spans

    def _job_records(self) -> Mapping[str, JobRecord]:
        """The controller's records: worker, wait and dependencies of each job."""
        run = self._config.stash.get(RUN_KEY, None)
        return run.jobs if run is not None else {}

    def _worker_of(self, nodeid: str) -> str:
        record = self._job_records().get(nodeid)
        return str(getattr(record, "worker", "") or IN_PROCESS_WORKER)


def _merge_outcome(current: str, report: pytest.TestReport) -> str:
    """Fold one phase report into the item's outcome (same words as the job table)."""
    wasxfail = getattr(report, "wasxfail", None)
    if report.failed:
        if report.when == "call":
            return "failed"
        return current if current == "failed" else "error"
    if report.skipped and report.when != "teardown" and current == "passed":
        return "xfailed" if wasxfail is not None else "skipped"
    if report.when == "call" and wasxfail is not None and current == "passed":
        return "xpassed"
    return current


def _final_status(record: JobRecord | None) -> str | None:
    """The controller's verdict on the job, once it has one."""
    if record is None or record.status in ("created", "pending", "running"):
        return None
    return record.status


def _span(nodeid: str, phases: _Phases, record: JobRecord | None) -> JobSpan | None:
    """Join what the reports said with the controller's record of the job."""
    # The reports' clocks are the worker's own; the record's are the fallback
    # (reports of pytest < 8 carry no start/stop).
    start = phases.start or getattr(record, "start", None)
    stop = phases.stop or getattr(record, "stop", None)
    if start is None or stop is None:
        return None  # never ran (e.g. skipped by the controller before starting)
    return JobSpan(
        nodeid=nodeid,
        worker=str(getattr(record, "worker", "") or IN_PROCESS_WORKER),
        outcome=_final_status(record) or phases.outcome,
        start=float(start),
        stop=float(max(stop, start)),
        setup=phases.durations.get("setup", 0.0),
        call=phases.durations.get("call", 0.0),
        teardown=phases.durations.get("teardown", 0.0),
        wait=float(getattr(record, "wait", 0.0) or 0.0),
        after=tuple(getattr(record, "after", ()) or ()),
        backend=str(getattr(record, "backend", "") or ""),
        exclusive=bool(getattr(record, "exclusive", False)),
        group=str(getattr(record, "group", "") or ""),
    )


AROUND_TESTS_SHARE = 0.2
"""The share of the workers' time spent between test phases above which the summary says so."""


def worker_time_line(spans: list[JobSpan]) -> str | None:
    """How the workers' time splits between the test phases and the rest, when the rest weighs.

    Each worker's time runs from its first test's start to its last test's end;
    pytest times only the tests' setup, call and teardown.  The rest is the
    backend's own cost per test (a forked child's fork and exit, a
    subprocess's interpreter start, the reports' way back) and any wait for
    work.  Without this line a run slowed by that cost reads as one that
    waited for free workers.  Tests run in the controller are left out, and
    so are workers that ran one test (a ``subprocess`` test's own process).
    """
    by_worker: dict[str, list[JobSpan]] = {}
    for span in spans:
        if span.backend not in IN_PROCESS_BACKENDS:
            by_worker.setdefault(span.worker, []).append(span)
    lanes = {worker: lane for worker, lane in by_worker.items() if len(lane) > 1}
    held = sum(max(s.stop for s in lane) - min(s.start for s in lane) for lane in lanes.values())
    in_tests = min(held, sum(s.setup + s.call + s.teardown for lane in lanes.values() for s in lane))
    rest = held - in_tests
    if held <= 0 or rest < AROUND_TESTS_SHARE * held or rest < 0.5:
        return None
    return (
        f"worker time {format_seconds(held)} = {format_seconds(in_tests)} in test phases"
        f" + {format_seconds(rest)} between them (each test's start, fork or reports, or no work)"
    )


def critical_path_lines(path: CriticalPath, width: int | None = None) -> list[str]:
    """The terminal summary of a run's critical path and of where its wall time went.

    A long chain is shortened to its longest jobs, in chain order; each run of
    left-out jobs becomes one line with their count and total time.  With a
    ``width``, node ids are shortened from the left to fit it.
    """
    if not path.chain:
        return []
    lines = [
        f"critical path: {len(path.chain)} job{'s' if len(path.chain) != 1 else ''}, "
        f"{format_seconds(path.busy)} busy (ideal wall time with unlimited workers)",
        f"wall {format_seconds(path.wall)} = {format_seconds(path.busy)} busy"
        f" + {format_seconds(path.waiting_worker)} waiting for a free worker",
        f"  + {format_seconds(path.waiting_exclusive)} waiting for an exclusive slot"
        f" + {format_seconds(path.scheduling)} scheduling",
    ]
    shown = _longest(path.chain, _MAX_CHAIN_LINES)
    hidden: list[JobSpan] = []
    for i, span in enumerate(path.chain):
        if i not in shown:
            hidden.append(span)
            continue
        if hidden:
            lines.append(_elided(hidden))
            hidden = []
        arrow = "  " if i == 0 else "→ "
        tail = f" ({span.worker}, {format_seconds(span.duration)})"
        nodeid = span.nodeid if width is None else shorten_left(span.nodeid, max(20, width - 4 - len(tail)))
        lines.append(f"  {arrow}{nodeid}{tail}")
    if hidden:
        lines.append(_elided(hidden))
    return lines


def _longest(chain: tuple[JobSpan, ...], count: int) -> set[int]:
    """Positions of the ``count`` longest jobs (earlier first among equals)."""
    if len(chain) <= count:
        return set(range(len(chain)))
    ranked = sorted(range(len(chain)), key=lambda i: (-chain[i].duration, i))
    return set(ranked[:count])


def _elided(spans: list[JobSpan]) -> str:
    total = format_seconds(sum(s.duration for s in spans))
    return f"  … {len(spans)} shorter job{'s' if len(spans) != 1 else ''} ({total})"
