"""The ``--executor-benchmark-*`` options, as fields of :class:`pytest_executor.config.options.Option`.

Kept here (plain data, no import of the options module) so the plugin's option
table gains them with one line; read them with
``pytest_executor.config.options.get_option(config, "benchmark-save")`` etc.
"""

from __future__ import annotations

from typing import Any, Final

from ._compare import parse_fail_on
from ._stats import COMPARABLE_FIELDS
from ._storage import check_name
from ._timing import TimingSettings, parse_duration, parse_min_rounds, parse_rounds

_DEFAULTS: Final = TimingSettings()

BENCHMARK_OPTIONS: Final[tuple[dict[str, Any], ...]] = (
    {
        "name": "benchmark-save",
        "help": "Save the job_benchmark results of the run as .benchmarks/NAME.json in the rootdir "
        "(with machine, Python and git commit).",
        "parse": check_name,
        "metavar": "NAME",
    },
    {
        "name": "benchmark-compare",
        "help": "Compare the job_benchmark results with the run saved as NAME; shows the change of "
        "the mean; with --executor-benchmark-fail-on a regression fails the run.",
        "parse": check_name,
        "metavar": "NAME",
    },
    {
        "name": "benchmark-fail-on",
        "help": "Fail the run when a benchmark is worse than in the compared run by more than a limit: "
        "FIELD:LIMIT, comma separated, FIELD one of " + ", ".join(COMPARABLE_FIELDS) + ", LIMIT a "
        "percentage (a number and the percent sign) or an amount in s, ms, us or ns (mean:2ms). "
        "The job_benchmark(fail_on=...) marker replaces it for one test.",
        "parse": parse_fail_on,
        "metavar": "FIELD:LIMIT[,...]",
    },
    {
        "name": "benchmark-only",
        "help": "Run only the tests that use the job_benchmark fixture (deselect the others).",
        "flag": True,
        "default": False,
    },
    {
        "name": "benchmark-skip",
        "help": "Deselect the tests that use the job_benchmark fixture.",
        "flag": True,
        "default": False,
    },
    {
        "name": "benchmark-disable-gc",
        "help": "Disable the garbage collector while job_benchmark rounds run.",
        "flag": True,
        "default": False,
    },
    {
        "name": "benchmark-min-rounds",
        "help": f"Fewest measured rounds of a job_benchmark. Default: {_DEFAULTS.min_rounds}.",
        "parse": parse_min_rounds,
        "metavar": "N",
    },
    {
        "name": "benchmark-min-time",
        "help": "Shortest round of a job_benchmark in seconds; calibration raises the calls per "
        f"round until a round lasts that long. Default: {_DEFAULTS.min_time:g}.",
        "parse": parse_duration,
        "metavar": "SECONDS",
    },
    {
        "name": "benchmark-max-time",
        "help": "Seconds the measured rounds of one job_benchmark should fill together "
        f"(--executor-benchmark-min-rounds wins). Default: {_DEFAULTS.max_time:g}.",
        "parse": parse_duration,
        "metavar": "SECONDS",
    },
    {
        "name": "benchmark-warmup-rounds",
        "help": f"Untimed rounds run before a job_benchmark is measured. Default: {_DEFAULTS.warmup_rounds}.",
        "parse": parse_rounds,
        "metavar": "N",
    },
)
"""Keyword arguments of one ``Option`` per benchmark option."""
