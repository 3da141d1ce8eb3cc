"""How the run view turns reports (and the controller's records) into job spans."""

from __future__ import annotations

import pytest

from pytest_executor.views._run_view import RunView
from pytest_executor.views.report import RUN_KEY, JobRecord, RunRecord


def report(nodeid: str, when: str, start: float, stop: float, outcome: str = "passed") -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid, location=("t.py", 0, nodeid), keywords={}, outcome=outcome,
        longrepr=None if outcome == "passed" else "boom", when=when,
        duration=stop - start, start=start, stop=stop,
    )


@pytest.fixture
def view(pytester: pytest.Pytester) -> RunView:
    config = pytester.parseconfig()
    run = RunRecord()
    run.jobs["t.py::a"] = JobRecord(
        test="t.py::a", backend="process", worker="w1", status="passed",
        start=100.0, stop=160.0, wait=0.25,
    )
    run.jobs["t.py::b"] = JobRecord(
        test="t.py::b", backend="process", worker="w0", status="failed",
        after=["t.py::a"], start=102.0, stop=103.0,
    )
    config.stash[RUN_KEY] = run
    view = RunView(config)
    view._opened = 0.0  # the reports below use small synthetic clock values, as if the run began at the epoch
    return view


def test_deferred_teardown_does_not_stretch_the_bar(view: RunView) -> None:
    # a's teardown ran at the end of the run (its worker got no next item).
    for r in (
        report("t.py::a", "setup", 100.0, 100.5),
        report("t.py::a", "call", 100.5, 102.0),
        report("t.py::a", "teardown", 159.0, 159.5),
    ):
        view.pytest_runtest_logreport(r)
    (span,) = view.spans()
    assert (span.start, span.stop) == (100.0, 102.5)
    assert (span.setup, span.call, span.teardown) == (0.5, 1.5, 0.5)
    assert (span.worker, span.backend, span.wait, span.outcome) == ("w1", "process", 0.25, "passed")


def test_record_supplies_worker_dependencies_and_verdict(view: RunView) -> None:
    view.pytest_runtest_logreport(report("t.py::b", "setup", 102.0, 102.1))
    view.pytest_runtest_logreport(report("t.py::b", "call", 102.1, 102.9, outcome="failed"))
    view.pytest_runtest_logreport(report("t.py::b", "teardown", 102.9, 103.0))
    (span,) = view.spans()
    assert span.after == ("t.py::a",)
    assert span.outcome == "failed"
    assert span.stop == pytest.approx(103.0)


def test_items_without_a_record_run_in_the_main_lane(view: RunView) -> None:
    view.pytest_runtest_logreport(report("t.py::c", "setup", 1.0, 1.0, outcome="skipped"))
    (span,) = view.spans()
    assert (span.worker, span.outcome, span.duration) == ("main", "skipped", 0.0)


def test_reports_without_clocks_fall_back_to_the_record(view: RunView) -> None:
    view.pytest_runtest_logreport(report("t.py::b", "call", 0.0, 0.0))
    (span,) = view.spans()
    assert (span.start, span.stop) == (102.0, 103.0)
