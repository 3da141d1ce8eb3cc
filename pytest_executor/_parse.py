"""Parsers for option values shared by the plugin's options and the benchmark options.

Each takes the raw text of a command-line or ini value and returns the parsed
value, or raises ``ValueError`` with a message that says what would be valid.
"""

from __future__ import annotations

import math
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


def parse_seconds(raw: str) -> float:
    """Parse a positive, finite number of seconds."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if not 0 < value < math.inf:
        raise ValueError(f"{raw!r} must be a positive number of seconds")
    return value


def usable_cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, as xdist's ``-n auto`` counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
