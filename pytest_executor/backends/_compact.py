"""Compact reports: a plain passed phase crosses the wire as four numbers, not a serialized report.

Most phase reports of a real suite say nothing but "passed, took this long":
no output, no warnings attached, no user properties, no extra attributes,
the item's own keywords.  A worker session whose channel accepts it
(``compact_reports`` on the channel, set by the ``process`` and ``dask`` backends'
:class:`~pytest_executor.backends._hosted.EngineLink`) sends such a report
as ``("logreport", {"nodeid": str, "compact": (when, duration, start, stop)})``
instead of ``pytest_report_to_serializable``'s dict.  The controller rebuilds
an equal :class:`pytest.TestReport` from its own collected item
(:class:`CompactReports`), which is all a serialized report would have told it:
the location and keywords are the item's (the worker checks that the
keywords did not change while the test ran; the location of a report is
always its item's).  Every other report takes the full path, so terminal
output, junitxml and plugins see the same reports either way.

``PYTEST_EXECUTOR_COMPACT_REPORTS=0`` in the controller's environment (the
workers inherit it) turns compact reports off, to compare both paths.
"""

from __future__ import annotations

import os
from typing import Any, Final

import pytest

ENV_COMPACT: Final = "PYTEST_EXECUTOR_COMPACT_REPORTS"
"""``0`` turns compact reports off (see the module docstring)."""

_PLAIN_ATTRIBUTES: Final = frozenset(
    pytest.TestReport(
        "x", ("x", None, "x"), {}, "passed", None, "call", sections=[], duration=0.0, start=0.0, stop=0.0,
        user_properties=[],
    ).__dict__
)
"""The attributes of a report with no extra ones (``wasxfail``, a plugin's own...)."""

Compact = tuple[str, float, float, float]
"""``(when, duration, start, stop)`` of a plain passed phase report."""


def compact_enabled() -> bool:
    """Whether compact reports are on in this process (see :data:`ENV_COMPACT`)."""
    return os.environ.get(ENV_COMPACT, "1") != "0"


def item_keywords(item: pytest.Item) -> dict[str, Any]:
    """The keywords a report of ``item`` carries when nothing changed them while it ran."""
    return {name: 1 for name in item.keywords}


def compact_of(report: pytest.TestReport, keywords: dict[str, Any]) -> Compact | None:
    """The compact form of ``report`` if it is a plain passed phase with the item's ``keywords``, else None."""
    if (
        type(report) is not pytest.TestReport
        or report.outcome != "passed"
        or report.longrepr is not None
        or report.sections
        or report.user_properties
        or report.__dict__.keys() != _PLAIN_ATTRIBUTES
        or report.keywords != keywords
    ):
        return None
    return (report.when, report.duration, report.start, report.stop)


class CompactReports:
    """The controller's side: rebuilds the reports of compact events from the session's items."""

    def __init__(self, session: pytest.Session | None) -> None:
        self._session = session
        self._items: dict[str, pytest.Item] | None = None
        self._keywords: dict[str, dict[str, Any]] = {}

    def rebuild(self, nodeid: str, compact: Compact,
                last_start: tuple[str, tuple[Any, ...]] | None = None) -> pytest.TestReport:
        """The report a worker sent as ``compact`` for ``nodeid``.

        ``last_start``: the nodeid and location of the worker's last logstart;
        when it is this item's, its location is taken from there instead of
        being worked out from the controller's item (a few dozen microseconds).
        """
        if self._items is None:
            self._items = {item.nodeid: item for item in (self._session.items if self._session else [])}
        item = self._items.get(nodeid)
        keywords = self._keywords.get(nodeid)
        if keywords is None:
            keywords = self._keywords[nodeid] = item_keywords(item) if item is not None else {}
        if last_start is not None and last_start[0] == nodeid:
            location: tuple[Any, ...] = last_start[1]
        else:
            location = item.location if item is not None else (nodeid.split("::")[0], None, nodeid)
        when, duration, start, stop = compact
        return pytest.TestReport(
            nodeid, location, dict(keywords), "passed", None, when,  # type: ignore[arg-type]
            sections=[], duration=duration, start=start, stop=stop, user_properties=[],
        )
