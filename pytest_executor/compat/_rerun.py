"""pytest-rerunfailures: ``@pytest.mark.flaky(reruns=N)`` and ``--reruns N`` become ``job(retries=N)``.

Without the plugin we register the ``flaky`` marker and ``--reruns`` (and its
ini twin ``reruns``) and retry failed tests through the executor: only the
final attempt is reported, every attempt is kept in the job table and JSON
report.  ``reruns_delay`` and the other rerun conditions of the plugin are
accepted and not used.

With the plugin installed we translate all the same, and the executor's
retries win: a test with ``job(retries=)`` runs through the executor's own run
protocol (in the pytest process and in workers alike), so the plugin's rerun
loop never sees it and no test is rerun twice.  Its ``R`` progress letters are
not shown; the job table counts the attempts.
"""

from __future__ import annotations

from typing import Final

import pytest

from ._common import add_job, ini_or_option, marker_value

PLUGIN: Final = "rerunfailures"
MARKER_DOC: Final = (
    "flaky(reruns=1, reruns_delay=0): rerun a failed test up to 'reruns' times "
    "(pytest-rerunfailures' marker, honoured by pytest-executor as job(retries=reruns))."
)


def add_options(parser: pytest.Parser) -> None:
    """``--reruns`` and its ini twin, as pytest-rerunfailures spells them."""
    group = parser.getgroup("rerunfailures", "re-run failing tests (pytest-rerunfailures, by pytest-executor)")
    group.addoption(
        "--reruns", action="store", dest="reruns", type=int, default=None, metavar="RERUNS",
        help="number of times to re-run failed tests (as job(retries=)).",
    )
    group.addoption(
        "--reruns-delay", action="store", dest="reruns_delay", type=float, default=None,
        help="accepted for pytest-rerunfailures suites; pytest-executor retries at once.",
    )
    parser.addini("reruns", "number of times to re-run failed tests (as job(retries=)).", default=None)


def configure(config: pytest.Config) -> None:
    """Register the ``flaky`` marker."""
    config.addinivalue_line("markers", MARKER_DOC)


def needed(config: pytest.Config, markers: frozenset[str]) -> bool:
    """A ``flaky`` marker somewhere, or reruns for every test."""
    return "flaky" in markers or _global_reruns(config) is not None


def reruns_of(item: pytest.Item, default: int | None) -> int | None:
    """The reruns a test asks for: its closest ``flaky`` marker, else the global setting."""
    mark = item.get_closest_marker("flaky")
    if mark is None:
        return default
    return marker_value(mark, "reruns", 0, 1)


def translate(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test with reruns a ``job(retries=)`` marker; reject bad counts."""
    default = _global_reruns(config)
    errors = []
    for item in items:
        reruns = reruns_of(item, default)
        if reruns is None or reruns == 0:
            continue
        if isinstance(reruns, bool) or not isinstance(reruns, int) or reruns < 0:
            errors.append(f"{item.nodeid}: flaky(reruns={reruns!r}) must be an integer >= 0")
            continue
        add_job(item, retries=reruns)
    if errors:
        raise pytest.UsageError("invalid flaky markers:\n  " + "\n  ".join(errors))


def _global_reruns(config: pytest.Config) -> int | None:
    raw = ini_or_option(config, "reruns", "reruns")
    if raw is None:
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"--reruns / ini reruns: {raw!r} is not an integer") from None
    if value < 0:
        raise pytest.UsageError(f"--reruns / ini reruns: {value} must be >= 0")
    return value
