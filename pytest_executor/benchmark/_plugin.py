"""pytest hooks of ``job_benchmark``: the fixture, selection, exclusivity, results, baselines.

Where things happen:

* every session (controller and worker): the ``job_benchmark`` fixture measures
  in the test; its record is put into the call report's ``user_properties``
  under the name ``job_benchmark`` (a JSON string), so it travels back from any
  worker as plain data;
* collection (everywhere, so workers select the same items): the
  ``job_benchmark`` marker is validated, ``--executor-benchmark-only/-skip``
  deselect, and, when the executor schedules the run, benchmark tests are made
  ``job(exclusive=True)``;
* the controller only: records are gathered from replayed reports, compared
  with a saved baseline, saved, put into the JSON report and shown as a table.

PYTEST_DONT_REWRITE: one of the plugin's ``pytest_plugins``, imported before pytest starts in a
worker session (see :mod:`pytest_executor`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, final

import pytest

from pytest_executor import WORKER_ENV
from pytest_executor.config.options import any_option_set, get_option

from ._compare import Regression, Threshold, find_regressions, parse_fail_on
from ._fixture import JobBenchmark
from ._stats import BenchmarkStats
from ._storage import StorageError, build_run, load_run, save_run, storage_dir
from ._table import render_benchmarks
from ._timing import TimingSettings

FIXTURE: Final = "job_benchmark"
PROPERTY: Final = "job_benchmark"
"""Name of the ``user_properties`` entry holding a benchmark record (JSON text)."""
MARKER: Final = "job_benchmark"
MARKER_DOC: Final = (
    "job_benchmark(fail_on=None, group=None, min_rounds=None, min_time=None, max_time=None, "
    "warmup_rounds=None, disable_gc=None): per-test settings of the job_benchmark fixture; "
    "fail_on (e.g. 'median:5%') replaces --executor-benchmark-fail-on for this benchmark. "
    "See the pytest-executor README."
)
MARKER_KEYWORDS: Final = (
    "fail_on", "group", "min_rounds", "min_time", "max_time", "warmup_rounds", "disable_gc",
)
_SETTINGS_KEYWORDS: Final = ("min_rounds", "min_time", "max_time", "warmup_rounds", "disable_gc")


@final
@dataclass
class BenchmarkRun:
    """State of one session: settings, and in the controller the gathered results."""

    settings: TimingSettings
    save: str | None = None
    compare: str | None = None
    thresholds: tuple[Threshold, ...] = ()
    only: bool = False
    skip: bool = False
    baseline: dict[str, dict[str, Any]] | None = None
    """Baseline records by benchmark name (``--executor-benchmark-compare``)."""
    overrides: dict[str, tuple[Threshold, ...]] = field(default_factory=dict)
    """Per-test ``fail_on`` thresholds from markers, by node id."""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Benchmark records of this run, by node id."""
    baseline_origin: str = ""
    """Where the baseline comes from (time, commit, Python, machine), for the summary."""
    regressions: list[Regression] = field(default_factory=list)
    saved_to: str | None = None
    sort: str | None = None
    """Order of the table within a group (``_table.SORT_KEYS``); default: mean."""
    columns: tuple[str, ...] | None = None
    """Columns of the table (``_table.COLUMNS`` labels); default: all."""


RUN_KEY: Final = pytest.StashKey[BenchmarkRun]()
_BENCH_KEY: Final = pytest.StashKey[JobBenchmark]()


# -- configuration -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, read and check the options, load the baseline."""
    config.addinivalue_line("markers", MARKER_DOC)
    run = BenchmarkRun(settings=_timing_settings(config))
    run.save = get_option(config, "benchmark-save")
    run.compare = get_option(config, "benchmark-compare")
    run.thresholds = get_option(config, "benchmark-fail-on") or ()
    run.only = bool(get_option(config, "benchmark-only"))
    run.skip = bool(get_option(config, "benchmark-skip"))
    if run.only and run.skip:
        raise pytest.UsageError(
            "--executor-benchmark-only and --executor-benchmark-skip exclude each other: choose one"
        )
    if run.thresholds and not run.compare:
        raise pytest.UsageError(
            "--executor-benchmark-fail-on compares with a saved run: add --executor-benchmark-compare NAME"
        )
    if run.compare and not is_worker(config):
        try:
            document = load_run(storage_dir(config.rootpath), run.compare)
        except StorageError as error:
            raise pytest.UsageError(f"--executor-benchmark-compare: {error}") from None
        run.baseline = {record["name"]: record for record in document.get("benchmarks", [])}
        run.baseline_origin = describe_origin(document)
    config.stash[RUN_KEY] = run
    if not is_worker(config):
        config.pluginmanager.register(ResultsPlugin(config, run), "executor-benchmark-results")


def describe_origin(document: dict[str, Any]) -> str:
    """One line saying when, at which commit and where a saved run was made."""
    machine = document.get("machine") or {}
    commit = document.get("commit") or {}
    parts = [f"saved {document.get('saved_at', '?')}"]
    if commit.get("id"):
        parts.append(f"commit {str(commit['id'])[:12]}{' (dirty)' if commit.get('dirty') else ''}")
    parts.append(f"Python {machine.get('python_version', '?')}")
    parts.append(f"on {machine.get('node', '?')} ({machine.get('machine', '?')}, {machine.get('cpu_count', '?')} CPUs)")
    return ", ".join(parts)


def _timing_settings(config: pytest.Config) -> TimingSettings:
    defaults = TimingSettings()
    values = {
        "min_rounds": get_option(config, "benchmark-min-rounds"),
        "min_time": get_option(config, "benchmark-min-time"),
        "max_time": get_option(config, "benchmark-max-time"),
        "warmup_rounds": get_option(config, "benchmark-warmup-rounds"),
        "disable_gc": get_option(config, "benchmark-disable-gc") or None,
    }
    return defaults.updated(**{key: value for key, value in values.items() if value is not None})


def is_worker(config: pytest.Config) -> bool:
    """True in a worker session (ours or pytest-xdist's): the controller reports, not us."""
    return hasattr(config, "workerinput") or bool(os.environ.get(WORKER_ENV))


# -- collection ----------------------------------------------------------------------


def uses_benchmark(item: pytest.Item) -> bool:
    """True if the test requests the ``job_benchmark`` fixture."""
    return FIXTURE in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate markers, apply ``--executor-benchmark-only/-skip``, make benchmarks exclusive.

    ``trylast``: after ``-k``/``-m`` deselection, so only selected tests decide
    whether the executor schedules the run (the plugin plans it afterwards, in
    ``pytest_collection_finish``).
    """
    run = config.stash[RUN_KEY]
    errors: list[str] = []
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    scheduled: bool | None = None  # computed on the first benchmark only
    for item in items:
        is_benchmark = uses_benchmark(item)
        if (run.only and not is_benchmark) or (run.skip and is_benchmark):
            dropped.append(item)
            continue
        keep.append(item)
        if not is_benchmark:
            if item.get_closest_marker(MARKER) is not None:
                errors.append(f"{item.nodeid}: @pytest.mark.{MARKER} on a test that does not use the {FIXTURE} fixture")
            continue
        try:
            fail_on = marker_settings(item, run.settings)[1]
        except ValueError as error:
            errors.append(f"{item.nodeid}: {error}")
            continue
        if fail_on is not None:
            run.overrides[item.nodeid] = fail_on
        if scheduled is None:
            scheduled = executor_schedules(config, items)
        if scheduled:
            make_exclusive(item)
    if errors:
        raise pytest.UsageError("invalid job_benchmark markers:\n  " + "\n  ".join(errors))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def executor_schedules(config: pytest.Config, items: list[pytest.Item]) -> bool:
    """True when the executor will schedule this run (an option set, or a ``job`` marker).

    Exclusivity only matters then; a plain pytest run (serial anyway) stays
    plain: no ``job`` marker is added to it.
    """
    return any_option_set(config) or any(item.get_closest_marker("job") is not None for item in items)


def make_exclusive(item: pytest.Item) -> None:
    """Schedule the test as ``job(exclusive=True)`` unless a ``job`` marker says otherwise."""
    if any("exclusive" in mark.kwargs for mark in item.iter_markers("job")):
        return  # the user decided, e.g. job(exclusive=False) to opt out
    item.add_marker(pytest.mark.job(exclusive=True))


def marker_settings(item: pytest.Item, base: TimingSettings) -> tuple[TimingSettings, tuple[Threshold, ...] | None]:
    """Timing settings and ``fail_on`` thresholds after the test's ``job_benchmark`` markers.

    The closest marker setting a keyword wins.  Raises ``ValueError`` naming the keyword.
    """
    chosen: dict[str, Any] = {}
    for mark in item.iter_markers(MARKER):
        if mark.args:
            raise ValueError(f"{MARKER}() takes keyword arguments only, got positional {mark.args!r}")
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYWORDS:
                raise ValueError(
                    f"{MARKER}() got an unknown keyword {key!r}; valid keywords: {', '.join(MARKER_KEYWORDS)}"
                )
            chosen.setdefault(key, value)
    changes = {key: chosen[key] for key in _SETTINGS_KEYWORDS if key in chosen}
    for key, value in changes.items():
        _check_setting(key, value)
    try:
        settings = base.updated(**changes)
    except ValueError as error:
        raise ValueError(f"{MARKER}(): {error}") from None
    fail_on = chosen.get("fail_on")
    if fail_on is None:
        return settings, None
    if not isinstance(fail_on, str):
        raise ValueError(f"{MARKER}(fail_on={fail_on!r}) must be a string such as 'median:5%'")
    try:
        return settings, parse_fail_on(fail_on)
    except ValueError as error:
        raise ValueError(f"{MARKER}(fail_on=...): {error}") from None


def _check_setting(key: str, value: object) -> None:
    if key == "disable_gc":
        if not isinstance(value, bool):
            raise ValueError(f"{MARKER}(disable_gc={value!r}) must be True or False")
    elif key in ("min_rounds", "warmup_rounds"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{MARKER}({key}={value!r}) must be an integer")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{MARKER}({key}={value!r}) must be a number of seconds")


def marker_group(item: pytest.Item) -> str | None:
    """The ``group=`` of the closest ``job_benchmark`` marker that sets one."""
    for mark in item.iter_markers(MARKER):
        if "group" in mark.kwargs:
            group = mark.kwargs["group"]
            return None if group is None else str(group)
    return None


# -- the fixture ------------------------------------------------------------------------


@pytest.fixture
def job_benchmark(request: pytest.FixtureRequest) -> Iterator[JobBenchmark]:
    """Measure a callable: ``job_benchmark(func, *args, **kwargs)`` returns ``func``'s result.

    Rounds and iterations are calibrated (see ``--executor-benchmark-*``
    options and the ``job_benchmark`` marker); ``job_benchmark.pedantic(...)``
    takes them as given.  The test runs as an exclusive job: nothing else of
    the run executes on the machine meanwhile.
    """
    run = request.config.stash[RUN_KEY]
    item = request.node
    settings, _ = marker_settings(item, run.settings)
    bench = JobBenchmark(item.nodeid, settings, group=marker_group(item))
    item.stash[_BENCH_KEY] = bench
    try:
        yield bench
    finally:
        del item.stash[_BENCH_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Put the measurement into the call report's ``user_properties`` before it is built."""
    if call.when == "call":
        bench = item.stash.get(_BENCH_KEY, None)
        record = bench.to_record() if bench is not None else None
        if record is not None:
            item.user_properties.append((PROPERTY, json.dumps(record, default=str)))
    return (yield)


# -- results (controller) -----------------------------------------------------------------


def records_of(report: pytest.TestReport) -> list[dict[str, Any]]:
    """Benchmark records carried by a report (any transport: JSON text or plain dict)."""
    found: list[dict[str, Any]] = []
    for entry in report.user_properties:
        if len(entry) == 2 and entry[0] == PROPERTY:
            value: Any = entry[1]
            found.append(json.loads(value) if isinstance(value, str) else dict(value))
    return found


@final
class ResultsPlugin:
    """Controller-only hooks: gather records, compare, save, report (registered at configure)."""

    def __init__(self, config: pytest.Config, run: BenchmarkRun) -> None:
        self.config = config
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather the benchmark of a passed call phase (as replayed in the controller)."""
        if report.when == "call" and report.passed and report.user_properties:
            for record in records_of(report):
                self.run.records[report.nodeid] = record

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Compare with the baseline, save, add to the JSON report; fail the run on a regression.

        ``tryfirst`` so the JSON report (written later in this hook) includes the benchmarks.
        """
        run = self.run
        if not run.records:
            return
        if run.baseline is not None:
            run.regressions = check_baseline(run)
            if run.regressions and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if run.save:
            document = build_run(run.save, ordered_records(run), self.config.rootpath)
            run.saved_to = str(save_run(storage_dir(self.config.rootpath), document))
        _add_to_json_report(self.config, run)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The benchmark table, what was saved, and the regressions that failed the run."""
        run = self.run
        if not run.records:
            return
        writer = terminalreporter
        count = len(run.records)
        writer.write_sep("-", f"job_benchmark: {count} benchmark{'s' if count != 1 else ''}")
        width = None if self.config.option.verbose > 0 else getattr(getattr(writer, "_tw", None), "fullwidth", None)
        table = render_benchmarks(list(run.records.values()), run.baseline, run.compare or "", run.sort, run.columns,
                                  width)
        for line in table.splitlines():
            writer.write_line(line)
        writer.write_line("times are per call; outliers: beyond 1 stddev;beyond 1.5 IQR")
        if run.baseline is not None:
            writer.write_line(f"compared with {run.compare!r}: {run.baseline_origin}")
        if run.saved_to:
            writer.write_line(f"saved benchmark run {run.save!r} to {run.saved_to}")
        if run.regressions:
            writer.write_sep("-", f"job_benchmark: {len(run.regressions)} regression(s) vs {run.compare!r}", red=True)
            for regression in run.regressions:
                writer.write_line(f"REGRESSION {regression.describe()}", red=True)
            # pytest's final line counts every key of the reporter's stats: "… 1 benchmark regression"
            key = "benchmark regression" if len(run.regressions) == 1 else "benchmark regressions"
            writer.stats.setdefault(key, []).extend(run.regressions)


def ordered_records(run: BenchmarkRun) -> list[dict[str, Any]]:
    """The run's records sorted by name (stable files, stable diffs)."""
    return [run.records[name] for name in sorted(run.records)]


def check_baseline(run: BenchmarkRun) -> list[Regression]:
    """Regressions of every benchmark that has a baseline, with per-test overrides."""
    assert run.baseline is not None
    found: list[Regression] = []
    for name, record in sorted(run.records.items()):
        before = run.baseline.get(name)
        thresholds = run.overrides.get(name, run.thresholds)
        if before is None or not thresholds:
            continue
        current = BenchmarkStats.from_dict(record["stats"])
        found.extend(find_regressions(name, current, BenchmarkStats.from_dict(before["stats"]), thresholds))
    return found


def _add_to_json_report(config: pytest.Config, run: BenchmarkRun) -> None:
    """Attach records to the plugin's job records (``--executor-report``), if it keeps any."""
    try:
        from pytest_executor.views.report import RUN_KEY as REPORT_KEY
    except ImportError:
        return
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    for name, record in run.records.items():
        job = report.jobs.get(name)
        if job is not None:
            job.extra["benchmark"] = record
    report.metadata["benchmarks"] = {
        "count": len(run.records),
        "saved": run.save,
        "compared_with": run.compare,
        "regressions": [regression.describe() for regression in run.regressions],
    }
