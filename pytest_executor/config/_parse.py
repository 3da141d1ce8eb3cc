"""Parsers for option values shared by the plugin's options and the benchmark options.

Each takes the raw text of a command-line or ini value and returns the parsed
value, or raises ``ValueError`` with a message that says what would be valid.
"""

from __future__ import annotations

import os


def parse_int_at_least(raw: str, lowest: int) -> int:
    """Parse an integer that is at least ``lowest``."""
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not an integer") from None
    if value < lowest:
        raise ValueError(f"{raw!r} must be at least {lowest}")
    return value


def parse_positive_int(raw: str) -> int:
    """Parse an integer >= 1."""
    return parse_int_at_least(raw, 1)


MAX_TIMEOUT = 366 * 24 * 3600.0
"""Longest timeout accepted (a year): beyond it a value is a mistake, and timers overflow."""


def valid_seconds(value: object) -> float | None:
    """``value`` as seconds if it is a positive number up to :data:`MAX_TIMEOUT`, else ``None``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float (10**400)
        return None
    return seconds if 0 < seconds <= MAX_TIMEOUT else None


def parse_seconds(raw: str) -> float:
    """Parse a positive, finite number of seconds, at most :data:`MAX_TIMEOUT`."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if valid_seconds(value) is None:
        raise ValueError(f"{raw!r} must be a positive number of seconds, at most {MAX_TIMEOUT:.0f} (a year)")
    return value


def usable_cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, as xdist's ``-n auto`` counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
