"""Regression thresholds (``mean:10%``, ``min:2ms``) and their check against a baseline.

Pure: parse text, compare :class:`BenchmarkStats`, describe what got worse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from ._format import format_change, format_rate, format_seconds
from ._stats import COMPARABLE_FIELDS, BenchmarkStats

_DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_THRESHOLD = re.compile(r"^\s*(?P<field>[a-z]+)\s*:\s*(?P<amount>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(?P<unit>%|s|ms|us|ns)?\s*$")

THRESHOLD_HELP = (
    "FIELD:LIMIT, comma separated; FIELD is one of " + ", ".join(COMPARABLE_FIELDS) + "; LIMIT is a percentage "
    "(mean:10%) or an absolute amount in s/ms/us/ns (median:2ms; a bare number is seconds, or operations per "
    "second for ops)"
)


@final
@dataclass(frozen=True)
class Threshold:
    """How much worse than the baseline one statistic may get."""

    field: str
    amount: float
    """A percentage when :attr:`percent`, else seconds (or operations/s for ``ops``)."""
    percent: bool
    text: str

    def allowed(self) -> str:
        """The limit as the user wrote it, normalised (``10%``, ``2 ms``)."""
        if self.percent:
            return f"{self.amount:g}%"
        return format_rate(self.amount) + " ops/s" if self.field == "ops" else format_seconds(self.amount)


@final
@dataclass(frozen=True)
class Regression:
    """One benchmark statistic that got worse than its threshold allows."""

    name: str
    threshold: Threshold
    baseline: float
    current: float

    @property
    def change_percent(self) -> float:
        """Relative change current vs baseline, in percent (``inf`` from a zero baseline)."""
        return relative_change(self.baseline, self.current)

    def describe(self) -> str:
        """One line naming the benchmark, the numbers and the limit."""
        field = self.threshold.field
        show = (lambda v: format_rate(v) + " ops/s") if field == "ops" else format_seconds
        return (
            f"{self.name}: {field} {show(self.current)} vs baseline {show(self.baseline)} "
            f"({format_change(self.change_percent)}; allowed {self.threshold.allowed()} worse, "
            f"rule {self.threshold.text})"
        )


def relative_change(baseline: float, current: float) -> float:
    """``(current - baseline) / baseline`` in percent; ``inf`` when the baseline is 0."""
    if baseline == 0:
        return 0.0 if current == 0 else math.inf
    return (current - baseline) / baseline * 100.0


def parse_thresholds(specs: Iterable[str]) -> tuple[Threshold, ...]:
    """Parse one or more comma separated specs; a malformed one raises ``ValueError``."""
    parsed: list[Threshold] = []
    for spec in specs:
        for part in spec.split(","):
            if part.strip():
                parsed.append(parse_threshold(part))
    return tuple(parsed)


def parse_threshold(text: str) -> Threshold:
    """Parse one ``FIELD:LIMIT`` spec such as ``mean:10%`` or ``min:0.5ms``."""
    match = _THRESHOLD.match(text.lower())
    if match is None:
        raise ValueError(f"malformed threshold {text.strip()!r}: expected {THRESHOLD_HELP}")
    field, unit = match["field"], match["unit"]
    if field not in COMPARABLE_FIELDS:
        raise ValueError(f"unknown field {field!r} in threshold {text.strip()!r}; valid: {', '.join(COMPARABLE_FIELDS)}")
    amount = float(match["amount"])
    if field == "ops" and unit not in (None, "%"):
        raise ValueError(f"threshold {text.strip()!r}: ops takes a percentage or operations per second, not {unit}")
    if unit == "%":
        return Threshold(field, amount, True, text.strip())
    return Threshold(field, amount * _DURATION_UNITS.get(unit or "s", 1.0), False, text.strip())


def find_regressions(
    name: str, current: BenchmarkStats, baseline: BenchmarkStats, thresholds: Iterable[Threshold]
) -> list[Regression]:
    """The thresholds ``current`` exceeds compared with ``baseline``."""
    found: list[Regression] = []
    for threshold in thresholds:
        before = float(getattr(baseline, threshold.field))
        after = float(getattr(current, threshold.field))
        # For durations bigger is worse; for operations per second smaller is.
        worse_by = before - after if threshold.field == "ops" else after - before
        if threshold.percent:
            exceeded = worse_by > 0 and (before == 0 or worse_by / before * 100.0 > threshold.amount)
        else:
            exceeded = worse_by > threshold.amount
        if exceeded:
            found.append(Regression(name, threshold, before, after))
    return found


def parse_fail_on(raw: str) -> tuple[Threshold, ...]:
    """Parse the value of ``--executor-benchmark-fail-on`` (at least one threshold)."""
    thresholds = parse_thresholds([raw])
    if not thresholds:
        raise ValueError(f"no threshold in {raw!r}: expected {THRESHOLD_HELP}")
    return thresholds
