"""Human-readable numbers for benchmark tables: scaled time units and rates."""

from __future__ import annotations

import math

_TIME_UNITS: tuple[tuple[str, float], ...] = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))
_RATE_UNITS: tuple[tuple[str, float], ...] = (("G", 1e9), ("M", 1e6), ("K", 1e3))


def format_seconds(seconds: float, digits: int = 4) -> str:
    """``0.005021`` → ``"5.021 ms"``: the largest unit in which the value is >= 1."""
    if math.isnan(seconds):
        return "nan"
    if seconds == 0:
        return "0 s"
    magnitude = abs(seconds)
    for unit, scale in _TIME_UNITS:
        if magnitude >= scale:
            return f"{_significant(seconds / scale, digits)} {unit}"
    return f"{_significant(seconds / 1e-9, digits)} ns"


def format_rate(per_second: float, digits: int = 4) -> str:
    """Operations per second with a K/M/G suffix: ``199.2``, ``12.35K``, ``3.1M``."""
    if math.isinf(per_second):
        return "inf"
    for suffix, scale in _RATE_UNITS:
        if per_second >= scale:
            return f"{_significant(per_second / scale, digits)}{suffix}"
    return _significant(per_second, digits)


def format_change(percent: float) -> str:
    """A signed relative change: ``+11.8%``, ``-3.0%``."""
    if math.isinf(percent):
        return "+inf%"
    return f"{percent:+.1f}%"


def _significant(value: float, digits: int) -> str:
    """Round to ``digits`` significant digits without scientific notation."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"
