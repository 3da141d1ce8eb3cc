"""pytest-benchmark: its ``benchmark`` fixture, marker and common options, on ``job_benchmark``.

Without the plugin we provide:

* the ``benchmark`` fixture — the ``job_benchmark`` object itself, so
  ``benchmark(fn, *args)``, ``benchmark.pedantic(...)``, ``benchmark.extra_info``
  and ``benchmark.group = ...`` work; a test using it is a ``job_benchmark``
  test (exclusive in parallel runs, selected by the options below);
* ``@pytest.mark.benchmark(group=, min_rounds=, min_time=, max_time=,
  disable_gc=, warmup=, warmup_iterations=)`` as ``job_benchmark(...)``
  (``timer``, ``calibration_precision`` are accepted and not used);
* ``--benchmark-only``, ``--benchmark-skip``, ``--benchmark-disable`` (the
  function runs once, unmeasured), ``--benchmark-min-rounds``,
  ``--benchmark-min-time``, ``--benchmark-max-time``, ``--benchmark-disable-gc``,
  ``--benchmark-sort`` and ``--benchmark-columns`` (the table), and, in
  pytest-benchmark's JSON format, ``--benchmark-json PATH``,
  ``--benchmark-autosave`` and ``--benchmark-compare [NUM|NAME]`` (see
  :mod:`._benchmark_files`).

With the plugin installed its fixture and options are its own and we add
nothing, but its tests are still exclusive when the executor schedules the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, final

import pytest

from pytest_executor.benchmark import _plugin as bench_plugin
from pytest_executor.benchmark._table import SORT_KEYS, parse_columns

from . import _benchmark_files as files
from ._common import add_job

PLUGIN: Final = "benchmark"
FIXTURE: Final = "benchmark"
MARKER_DOC: Final = (
    "benchmark(group=None, min_rounds=None, min_time=None, max_time=None, disable_gc=None, warmup=None): "
    "pytest-benchmark's marker, honoured by pytest-executor as job_benchmark(...)."
)
_MARKER_KEYS: Final = {"group": "group", "min_rounds": "min_rounds", "min_time": "min_time",
                       "max_time": "max_time", "disable_gc": "disable_gc"}
_IGNORED_KEYS: Final = frozenset({"timer", "calibration_precision", "warmup", "warmup_iterations", "cprofile"})


def add_options(parser: pytest.Parser) -> None:
    """The ``--benchmark-*`` options people use most, as pytest-benchmark spells them."""
    group = parser.getgroup("benchmark", "benchmarks (pytest-benchmark, by pytest-executor's job_benchmark)")
    group.addoption("--benchmark-only", action="store_true", default=False, help="Only run benchmarks.")
    group.addoption("--benchmark-skip", action="store_true", default=False, help="Skip running any tests that contain benchmarks.")
    group.addoption("--benchmark-disable", action="store_true", default=False,
                    help="Run benchmarked functions once, without measuring them.")
    group.addoption("--benchmark-disable-gc", action="store_true", default=False, help="Disable GC during benchmarks.")
    group.addoption("--benchmark-min-rounds", type=int, default=None, metavar="NUM", help="Minimum rounds.")
    group.addoption("--benchmark-min-time", type=float, default=None, metavar="SECONDS", help="Minimum time per round.")
    group.addoption("--benchmark-max-time", type=float, default=None, metavar="SECONDS", help="Maximum run time per test.")
    group.addoption("--benchmark-autosave", action="store_true", default=False,
                    help="Save the run as .benchmarks/<machine>/NNNN_<commit>_<time>.json (pytest-benchmark's format).")
    group.addoption("--benchmark-compare", metavar="NUM|NAME", nargs="?", default=None, const=True,
                    help="Compare with saved run NUM (or whose name starts with NAME), or the latest one.")
    group.addoption("--benchmark-json", metavar="PATH", default=None, help="Write the results to PATH in pytest-benchmark's JSON format.")
    group.addoption("--benchmark-sort", metavar="COL", default=None, help="Sort the table by " + ", ".join(SORT_KEYS) + ".")
    group.addoption("--benchmark-columns", metavar="LABELS", default=None, help="Comma-separated columns of the table.")


def configure(config: pytest.Config) -> None:
    """Register the marker and fixture; map the options onto ``job_benchmark``'s run."""
    config.addinivalue_line("markers", MARKER_DOC)
    run = config.stash[bench_plugin.RUN_KEY]
    option = config.getoption
    run.only = run.only or bool(option("benchmark_only"))
    run.skip = (run.skip or bool(option("benchmark_skip"))) and not run.only  # as there: --benchmark-only wins
    changes = {"min_rounds": option("benchmark_min_rounds"), "min_time": option("benchmark_min_time"),
               "max_time": option("benchmark_max_time"), "disable_gc": option("benchmark_disable_gc") or None}
    try:
        run.settings = run.settings.updated(**{key: value for key, value in changes.items() if value is not None})
    except ValueError as error:
        raise pytest.UsageError(f"--benchmark-*: {error}") from None
    run.sort = _checked_sort(option("benchmark_sort"))
    run.columns = _checked_columns(option("benchmark_columns"))
    compare = option("benchmark_compare")
    if compare is not None and not bench_plugin.is_worker(config):
        try:
            path = files.find_saved(config.rootpath, compare)
            run.baseline = files.load_baseline(path)
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
        run.compare = path.stem
        run.baseline_origin = str(path)
    config.pluginmanager.register(_Fixture(disabled=bool(option("benchmark_disable"))), "executor-compat-benchmark")
    if not bench_plugin.is_worker(config):
        config.pluginmanager.register(_Files(config), "executor-compat-benchmark-files")


def _checked_sort(value: str | None) -> str | None:
    if value is not None and value not in SORT_KEYS:
        raise pytest.UsageError(f"--benchmark-sort={value!r}: choose one of {', '.join(SORT_KEYS)}")
    return value


def _checked_columns(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return parse_columns(value)
    except ValueError as error:
        raise pytest.UsageError(f"--benchmark-columns: {error}") from None


def uses_fixture(item: pytest.Item) -> bool:
    """True if the test requests pytest-benchmark's ``benchmark`` fixture."""
    return FIXTURE in getattr(item, "fixturenames", ())


def needed(config: pytest.Config, markers: frozenset[str]) -> bool:
    """Always: tests using the fixture are found by their fixture names, not markers."""
    return True


def translate(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``benchmark`` markers become ``job_benchmark`` markers; reject unknown keywords."""
    errors = []
    for item in items:
        if not uses_fixture(item):
            continue
        for mark in item.iter_markers("benchmark"):
            unknown = sorted(set(mark.kwargs) - set(_MARKER_KEYS) - _IGNORED_KEYS)
            if mark.args or unknown:
                errors.append(f"{item.nodeid}: benchmark() takes the keywords {', '.join(sorted(_MARKER_KEYS))} "
                              f"(got {', '.join(unknown) or repr(mark.args)})")
                continue
            mapped = {_MARKER_KEYS[key]: value for key, value in mark.kwargs.items() if key in _MARKER_KEYS}
            if mapped:
                item.add_marker(pytest.mark.job_benchmark(**mapped))
    if errors:
        raise pytest.UsageError("invalid benchmark markers:\n  " + "\n  ".join(errors))
    if _xdist_distributes(config):
        make_exclusive(config, items)


def _xdist_distributes(config: pytest.Config) -> bool:
    """pytest-xdist runs tests on several workers (``-n N``), here or as one of them."""
    return hasattr(config, "workerinput") or bool(config.getoption("numprocesses", None))


def make_exclusive(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks run alone when the executor schedules the run or xdist distributes it."""
    if bench_plugin.executor_schedules(config, items) or _xdist_distributes(config):
        for item in items:
            if uses_fixture(item) and not any("exclusive" in m.kwargs for m in item.iter_markers("job")):
                add_job(item, exclusive=True)


@final
class _Disabled:
    """``--benchmark-disable``: the function runs once, nothing is measured."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.group: str | None = None
        self.stats = None

    def __call__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``func`` once and return its result."""
        return func(*args, **kwargs)

    def pedantic(self, target: Callable[..., Any], args: Any = (), kwargs: Any = None, setup: Any = None,
                 teardown: Any = None, **_ignored: Any) -> Any:
        """One call of ``target`` (with ``setup``'s arguments when given)."""
        args, kwargs = tuple(args), dict(kwargs or {})
        if setup is not None:
            prepared = setup()
            if prepared is not None:
                args, kwargs = tuple(prepared[0]), dict(prepared[1])
        result = target(*args, **kwargs)
        if teardown is not None:
            teardown(*args, **kwargs)
        return result


@final
class _Fixture:
    """Holds the ``benchmark`` fixture (registered only when pytest-benchmark is absent)."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled

    @pytest.fixture
    def benchmark(self, job_benchmark: Any) -> Any:
        """pytest-benchmark's fixture, by ``job_benchmark``: ``benchmark(fn, *args)`` measures ``fn``.

        Requesting ``job_benchmark`` makes the test a ``job_benchmark`` test
        (exclusive, selected by ``--benchmark-only`` ...).
        """
        return _Disabled() if self.disabled else job_benchmark


@final
class _Files:
    """Writes ``--benchmark-json`` / ``--benchmark-autosave`` files at the end (controller only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.written: list[Path] = []

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        """Write the files, after ``job_benchmark`` gathered and compared its records."""
        run = self.config.stash[bench_plugin.RUN_KEY]
        if not run.records:
            return
        document = files.to_document(bench_plugin.ordered_records(run), self.config.rootpath)
        target = self.config.getoption("benchmark_json")
        if target:
            self.written.append(files.write_document(Path(target), document))
        if self.config.getoption("benchmark_autosave"):
            path = files.autosave_path(self.config.rootpath, files.autosave_tag(self.config.rootpath))
            self.written.append(files.write_document(path, document))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say where the files went."""
        for path in self.written:
            terminalreporter.write_line(f"benchmark: wrote {path}")
