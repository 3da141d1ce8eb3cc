"""pytest-timeout: ``@pytest.mark.timeout(N)`` and ``--timeout N`` become ``job(timeout=N)``.

Without the plugin we register the ``timeout`` marker, ``--timeout`` and the
ini key ``timeout`` (``PYTEST_TIMEOUT`` in the environment too), in that
plugin's order of precedence: marker, command line, ini, environment; ``0``
means no timeout.  The executor then fails only the test that ran too long: on
a worker backend it kills that test's worker (after dumping its stack) and
replaces it; in the pytest process the call phase runs on a helper thread.

With the plugin installed it enforces its timeouts itself, in whichever process
runs the test; we translate nothing, so no test is timed twice.
"""

from __future__ import annotations

import os
from typing import Final

import pytest

from ._common import add_job, ini_or_option, marker_value

PLUGIN: Final = "timeout"
MARKER_DOC: Final = (
    "timeout(timeout): fail the test after 'timeout' seconds "
    "(pytest-timeout's marker, honoured by pytest-executor as job(timeout=))."
)


def add_options(parser: pytest.Parser) -> None:
    """``--timeout`` and the ini key ``timeout``, as pytest-timeout spells them."""
    group = parser.getgroup("timeout", "test timeouts (pytest-timeout, by pytest-executor)")
    help_text = "timeout in seconds of each test (as job(timeout=)); 0 means none."
    group.addoption("--timeout", action="store", dest="timeout", type=float, default=None, help=help_text)
    parser.addini("timeout", help_text, default=None)


def configure(config: pytest.Config) -> None:
    """Register the ``timeout`` marker."""
    config.addinivalue_line("markers", MARKER_DOC)


def needed(config: pytest.Config, markers: frozenset[str]) -> bool:
    """A ``timeout`` marker somewhere, or a timeout for every test."""
    return PLUGIN in markers or _global_timeout(config) is not None


def translate(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test with a timeout a ``job(timeout=)`` marker; reject bad values."""
    default = _global_timeout(config)
    errors = []
    for item in items:
        mark = item.get_closest_marker("timeout")
        seconds = default if mark is None else marker_value(mark, "timeout", 0, None)
        if seconds is None:
            continue
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            errors.append(f"{item.nodeid}: timeout({seconds!r}) must be a number of seconds >= 0")
            continue
        if seconds > 0:
            add_job(item, timeout=seconds)
    if errors:
        raise pytest.UsageError("invalid timeout markers:\n  " + "\n  ".join(errors))


def _global_timeout(config: pytest.Config) -> float | None:
    raw = ini_or_option(config, "timeout", "timeout")
    source = "--timeout / ini timeout"
    if raw is None:
        raw, source = os.environ.get("PYTEST_TIMEOUT") or None, "PYTEST_TIMEOUT"
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source}: {raw!r} is not a number of seconds") from None
    if value < 0:
        raise pytest.UsageError(f"{source}: {value:g} must be >= 0")
    return value or None
