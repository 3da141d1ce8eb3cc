"""Command-line options of the plugin, each with an ini twin sharing one help text.

Every option lives in :data:`OPTIONS` as one :class:`Option` line; adding an
option is adding a line there.  Read values with :func:`get_option` — it applies
the one precedence rule of the plugin (command line if given, else the ini
file, else the default) and validates the value, raising :class:`pytest.UsageError`
that names both spellings of the option and what is valid.

Options are registered under the ``executor`` group of ``pytest --help``; the
command-line spelling is ``--executor-NAME`` and the ini spelling
``executor_NAME`` (dashes become underscores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

import pytest

from pytest_executor.config._parse import parse_positive_int, parse_seconds, usable_cpu_count
from pytest_executor.views._timeline import parse_timeline_path

from pytest_executor.benchmark._options import BENCHMARK_OPTIONS

BACKENDS: Final = ("local", "thread", "process", "forked", "subprocess", "dask")
"""Where a test may run; ``local`` and ``thread`` stay in the pytest process."""

IN_PROCESS_BACKENDS: Final = frozenset({"local", "thread"})
"""Backends the controller runs itself, in the pytest process."""

TABLE_MODES: Final = ("all", "failed", "summary", "none")
"""Values of ``--executor-table``."""


def parse_choice(choices: Sequence[str]) -> Callable[[str], str]:
    """Return a parser accepting exactly one of ``choices``."""

    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_workers(raw: str) -> int:
    """Parse ``N`` (>= 1) or ``auto`` (the number of CPUs this process may use)."""
    if raw.strip() == "auto":
        return usable_cpu_count()
    try:
        return parse_positive_int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is neither a positive integer nor 'auto'") from None


def parse_json_path(raw: str) -> str:
    """Parse the path of a JSON file to write."""
    if not raw.strip():
        raise ValueError("the path is empty")
    if not raw.endswith(".json"):
        raise ValueError(f"{raw!r} must end with .json")
    return raw


def parse_text(raw: str) -> str:
    """Accept any non-empty text."""
    if not raw.strip():
        raise ValueError("the value is empty")
    return raw


def parse_names(raw: str) -> tuple[str, ...]:
    """Parse a comma- or space-separated list of Python names (fixture names)."""
    names = tuple(name for name in raw.replace(",", " ").split() if name)
    if not names:
        raise ValueError("no name given")
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a fixture name")
    return names


def parse_bool(raw: str) -> bool:
    """Parse an ini boolean (``true/false``, ``1/0``, ``yes/no``, ``on/off``)."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false)")


@final
@dataclass(frozen=True)
class Option:
    """One plugin option: ``--executor-NAME`` on the command line, ``executor_NAME`` in ini."""

    name: str
    """Short name: ``backend`` gives ``--executor-backend`` / ``executor_backend``."""
    help: str
    """Shared by the command-line option and its ini twin."""
    parse: Callable[[str], Any] = parse_text
    """Turns the raw text into a value; raises ``ValueError`` with a reason."""
    default: Any = None
    """Value when neither the command line nor the ini file sets the option."""
    metavar: str | None = None
    flag: bool = False
    """A switch without value (``store_true``); its ini twin is a boolean."""

    @property
    def cli(self) -> str:
        """The command-line spelling."""
        return "--executor-" + self.name

    @property
    def ini(self) -> str:
        """The ini spelling (also the argparse ``dest``)."""
        return "executor_" + self.name.replace("-", "_")


OPTIONS: list[Option] = [
    Option(
        "backend",
        "Where tests run: local (in place, the default), thread (call phase on a "
        "helper thread), process (warm worker processes), forked (each test in a "
        "child forked from a warm worker), subprocess (a fresh pytest per test) "
        "or dask (a dask cluster).",
        parse_choice(BACKENDS),
        metavar="{" + ",".join(BACKENDS) + "}",
    ),
    Option(
        "workers",
        "Number of workers of the process/forked/subprocess/dask backends, or 'auto' "
        "(one per CPU). Default: auto.",
        parse_workers,
        metavar="N|auto",
    ),
    Option(
        "workers-max",
        "Lift the cap on --executor-workers (by default a few per CPU, and no more "
        "than the available memory holds) up to N.",
        parse_positive_int,
        metavar="N",
    ),
    Option(
        "fork-shared",
        "Session-scoped fixtures (comma-separated names) that the forked backend sets up "
        "once per worker, before forking, and shares copy-on-write with every test's child "
        "instead of setting them up around each test. Only for fixtures whose value the "
        "tests may change in memory alone: files, databases or connections they reach "
        "would be shared by all tests. A usage error when no selected test runs on the "
        "forked backend (from the ini file: a warning line).",
        parse_names,
        metavar="NAME[,NAME...]",
    ),
    Option(
        "dask-address",
        "Address of the dask scheduler to use with --executor-backend=dask "
        "(default: start a local cluster).",
        metavar="ADDR",
    ),
    Option(
        "max-jobs",
        "Upper bound of tests running at the same time, all backends together.",
        parse_positive_int,
        metavar="N",
    ),
    Option(
        "timeout",
        "Default timeout in seconds of every test job; job(timeout=) overrides it.",
        parse_seconds,
        metavar="SECONDS",
    ),
    Option(
        "table",
        "Job table printed at the end: all jobs, only failed ones, a summary per "
        "backend, or none. Default: summary when the plugin is active.",
        parse_choice(TABLE_MODES),
        metavar="{" + ",".join(TABLE_MODES) + "}",
    ),
    Option(
        "report",
        "Write every job (with all attempts) and run metadata as JSON to PATH.json.",
        parse_json_path,
        metavar="PATH.json",
    ),
    Option(
        "timeline",
        "Draw every job on a per-worker timeline with the critical path marked: "
        "PATH.html (interactive page, works offline) or PATH.svg (static picture).",
        parse_timeline_path,
        metavar="PATH.html|PATH.svg",
    ),
    Option(
        "with-deps",
        "Also run tests outside the selection that selected tests depend on (job(after=)), "
        "collecting the files they live in if needed.",
        parse_bool,
        default=False,
        flag=True,
    ),
    *(Option(**fields) for fields in BENCHMARK_OPTIONS),  # job_benchmark: --executor-benchmark-*
]
"""Every option of the plugin; later features add one line each."""


def find_option(name: str) -> Option:
    """Return the option called ``name`` (short name, e.g. ``"backend"``)."""
    for option in OPTIONS:
        if option.name == name:
            return option
    known = ", ".join(o.name for o in OPTIONS)
    raise KeyError(f"unknown executor option {name!r}; known: {known}")


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin under the ``executor`` help group."""
    group = parser.getgroup("executor", "pytest-executor: run tests as engine jobs")
    for option in OPTIONS:
        if option.flag:
            group.addoption(
                option.cli, action="store_true", default=None, dest=option.ini, help=option.help
            )
            parser.addini(option.ini, option.help, type="bool", default=None)
        else:
            group.addoption(
                option.cli, action="store", default=None, dest=option.ini,
                metavar=option.metavar, help=option.help,
            )
            parser.addini(option.ini, option.help, type="string", default=None)


def read_ini(config: pytest.Config, name: str) -> Any:
    """``config.getini(name)``, or None when the ini file does not set it.

    Unset reads as the registered default (ours: None) on pytest 8 and later,
    as an empty list or string on pytest 7, and an empty value means unset too.
    """
    value = config.getini(name)
    return None if value in (None, "", []) else value


def raw_option(config: pytest.Config, name: str) -> tuple[Any, str | None]:
    """Return ``(raw value, where it came from)``; ``(None, None)`` when unset."""
    option = find_option(name)
    value = config.getoption(option.ini, None)
    if value is not None:
        return value, option.cli
    value = read_ini(config, option.ini)
    if value is not None:
        return value, option.ini
    return None, None


def get_option(config: pytest.Config, name: str) -> Any:
    """Value of option ``name``: command line if given, else ini, else default.

    Raises :class:`pytest.UsageError` naming the option when the value is invalid.
    """
    option = find_option(name)
    raw, source = raw_option(config, name)
    if raw is None:
        return option.default
    if isinstance(raw, bool):
        return raw
    try:
        return option.parse(str(raw))
    except ValueError as error:
        raise pytest.UsageError(
            f"{source}: {error} (option {option.cli} / ini {option.ini})"
        ) from None


def validate_options(config: pytest.Config) -> dict[str, Any]:
    """Read and validate every option once; return ``{name: value}``."""
    values = {option.name: get_option(config, option.name) for option in OPTIONS}
    check_workers_cap(values.get("workers"), values.get("workers-max"))
    return values


def check_workers_cap(workers: int | None, workers_max: int | None) -> None:
    """Refuse more workers than the machine can hold, unless ``--executor-workers-max`` allows them."""
    if workers is None:
        return
    if workers_max is not None:
        if workers > workers_max:
            raise pytest.UsageError(
                f"--executor-workers={workers} exceeds --executor-workers-max={workers_max}"
            )
        return
    limit, reason = workers_limit()
    if workers > limit:
        raise pytest.UsageError(
            f"--executor-workers={workers} exceeds the limit of {limit} workers on this machine "
            f"({reason}); pass --executor-workers-max={workers} to run that many anyway"
        )


_WORKERS_PER_CPU = 4
_MEMORY_PER_WORKER = 100 * 1024 * 1024
"""A rough floor for one warm pytest worker process (interpreter, pytest, the suite's imports)."""


def workers_limit() -> tuple[int, str]:
    """The default cap on workers and why: a few per CPU, and what the available memory holds."""
    import psutil

    cpus = usable_cpu_count()
    by_cpu = _WORKERS_PER_CPU * cpus
    available = psutil.virtual_memory().available
    by_memory = max(1, available // _MEMORY_PER_WORKER)
    if by_memory < by_cpu:  # never below one per CPU: 'auto' always fits
        return max(cpus, int(by_memory)), (
            f"{available // (1024 * 1024)} MiB of available memory at ~{_MEMORY_PER_WORKER // (1024 * 1024)} MiB "
            "per worker"
        )
    return by_cpu, f"{_WORKERS_PER_CPU} per CPU, {cpus} CPUs"


def any_option_set(config: pytest.Config) -> bool:
    """True when the user set any executor option (command line or ini)."""
    return any(raw_option(config, option.name)[0] not in (None, False) for option in OPTIONS)
