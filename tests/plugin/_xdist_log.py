"""The log that inner xdist suites write, and its reading: when and where each test ran.

Every inner test appends ``start``/``end`` lines with a timestamp and its xdist
worker to a log file (through the ``logger`` module that :func:`write_suite`
adds); the assertions read the log, so ordering is checked on what really
happened, not on scheduler internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

LOGGER = '''
import os, time

LOG = {log!r}


def note(name, event):
    with open(LOG, "a") as stream:
        stream.write(f"{{time.time():.6f}} {{os.environ.get('PYTEST_XDIST_WORKER', 'main')}} {{event}} {{name}}\\n")
'''
"""Source of the inner ``logger`` module (format with ``log=`` the log file's path)."""


@dataclass
class Span:
    """When and where one inner test ran."""

    worker: str
    start: float = 0.0
    end: float = 0.0


@dataclass
class Log:
    """The inner tests' log, parsed."""

    spans: dict[str, Span] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Log:
        """The log of a run where each test ran once."""
        log = cls()
        for stamp, worker, event, name in _entries(path):
            span = log.spans.setdefault(name, Span(worker))
            setattr(span, event, stamp)
        return log

    @classmethod
    def read_per_worker(cls, path: Path) -> dict[str, Log]:
        """One log per xdist worker, for runs where every worker runs every test (``--dist each``)."""
        logs: dict[str, Log] = {}
        for stamp, worker, event, name in _entries(path):
            span = logs.setdefault(worker, cls()).spans.setdefault(name, Span(worker))
            setattr(span, event, stamp)
        return logs

    def before(self, first: str, then: str) -> bool:
        """Whether ``first`` ended before ``then`` started."""
        return self.spans[first].end <= self.spans[then].start

    def overlaps(self, name: str) -> list[str]:
        """The tests that ran while ``name`` ran."""
        mine = self.spans[name]
        return [
            other for other, span in self.spans.items()
            if other != name and span.start < mine.end and mine.start < span.end
        ]


def _entries(path: Path) -> list[tuple[float, str, str, str]]:
    """``(timestamp, worker, event, test)`` of every line of the log."""
    entries = []
    for line in path.read_text().splitlines():
        stamp, worker, event, name = line.split(" ", 3)
        entries.append((float(stamp), worker, event, name))
    return entries


def write_suite(pytester: pytest.Pytester, **modules: str) -> Path:
    """Write the inner test modules and their ``logger``; return the log's path."""
    log = pytester.path / "run.log"
    pytester.makepyfile(logger=LOGGER.format(log=str(log)), **modules)
    return log


LOGGED_CHAIN = '''
import pytest
from logger import note


@pytest.fixture(autouse=True)
def log_span(request):
    note(request.node.name, "start")
    yield
    note(request.node.name, "end")


@pytest.mark.job(after="test_b")
def test_c():
    pass


def test_a():
    pass


@pytest.mark.job(after="test_a")
def test_b():
    pass
'''
"""The start of the xdist suites: every test logs its span; ``test_c`` after ``test_b`` after ``test_a``."""
