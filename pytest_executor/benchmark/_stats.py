"""Pure statistics over the per-round timings of one benchmark.

Everything here works on plain numbers (nanoseconds in, seconds out) and does no
I/O, so it can be unit-tested without pytest or a clock.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, final

TIME_FIELDS: tuple[str, ...] = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "total")
"""Fields of :class:`BenchmarkStats` that hold durations in seconds."""

COMPARABLE_FIELDS: tuple[str, ...] = ("min", "max", "mean", "stddev", "median", "iqr", "ops")
"""Fields a ``fail-on`` threshold may name."""


@final
@dataclass(frozen=True)
class BenchmarkStats:
    """Summary of one benchmark: durations are seconds *per call* (one iteration)."""

    min: float
    max: float
    mean: float
    stddev: float
    median: float
    q1: float
    q3: float
    iqr: float
    iqr_outliers: int
    """Rounds outside ``[q1 - 1.5 IQR, q3 + 1.5 IQR]``."""
    stddev_outliers: int
    """Rounds outside ``[mean - stddev, mean + stddev]``."""
    rounds: int
    iterations: int
    """Calls of the function per round."""
    total: float
    """Seconds spent in all measured rounds together."""
    ops: float
    """Calls per second (``1 / mean``; ``inf`` when the mean is 0)."""

    @property
    def outliers(self) -> str:
        """Outlier counts as ``"<1 stddev rule>;<1.5 IQR rule>"``."""
        return f"{self.stddev_outliers};{self.iqr_outliers}"

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-ready data (``ops`` of ``inf`` becomes ``None``)."""
        data: dict[str, float | int] = asdict(self)
        if math.isinf(self.ops):
            data.pop("ops")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkStats:
        """Rebuild from :meth:`to_dict` output; a missing field raises ``ValueError``."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data and name != "ops"]
        if missing:
            raise ValueError(f"benchmark statistics lack {', '.join(missing)}")
        values = {name: data[name] for name in names if name != "ops"}
        ops = data.get("ops")
        values["ops"] = float("inf") if ops is None else float(ops)
        return cls(**values)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartile, interpolated inclusively (one value → itself twice)."""
    if not values:
        raise ValueError("quartiles of no values")
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def count_outside(values: Sequence[float], low: float, high: float) -> int:
    """How many values lie strictly outside ``[low, high]``."""
    return sum(1 for value in values if value < low or value > high)


def compute_stats(round_ns: Sequence[int], iterations: int) -> BenchmarkStats:
    """Statistics of rounds that each ran the function ``iterations`` times.

    ``round_ns`` holds the wall time of every round in nanoseconds; results are
    seconds per single call.
    """
    if not round_ns:
        raise ValueError("no rounds were measured")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    per_call = [ns / iterations / 1e9 for ns in round_ns]
    mean = statistics.fmean(per_call)
    stddev = statistics.stdev(per_call) if len(per_call) > 1 else 0.0
    q1, q3 = quartiles(sorted(per_call))
    iqr = q3 - q1
    return BenchmarkStats(
        min=min(per_call),
        max=max(per_call),
        mean=mean,
        stddev=stddev,
        median=statistics.median(per_call),
        q1=q1,
        q3=q3,
        iqr=iqr,
        iqr_outliers=count_outside(per_call, q1 - 1.5 * iqr, q3 + 1.5 * iqr),
        stddev_outliers=count_outside(per_call, mean - stddev, mean + stddev),
        rounds=len(per_call),
        iterations=iterations,
        total=sum(round_ns) / 1e9,
        ops=1.0 / mean if mean > 0 else float("inf"),
    )
