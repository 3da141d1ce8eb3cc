"""The end-of-run benchmark table (tabulate), sorted, with scaled units.

Pure: takes benchmark records (the fixture's plain data) and an optional
baseline, returns text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._compare import relative_change
from ._format import format_change, format_rate, format_seconds
from ._stats import BenchmarkStats

HEADERS: tuple[str, ...] = (
    "benchmark", "min", "max", "mean", "stddev", "median", "IQR", "outliers", "ops/s", "rounds", "iterations",
)


def sort_key(record: Mapping[str, Any]) -> tuple[str, float, str]:
    """Group first, then fastest mean first, then name."""
    return (record.get("group") or "", float(record["stats"]["mean"]), record["name"])


def benchmark_rows(
    records: Sequence[Mapping[str, Any]], baseline: Mapping[str, Mapping[str, Any]] | None = None
) -> list[list[str]]:
    """One row per benchmark in :data:`HEADERS` order (+ a change column with a baseline)."""
    rows = []
    for record in sorted(records, key=sort_key):
        stats = BenchmarkStats.from_dict(record["stats"])
        row = [
            record["name"] + (f" [{record['group']}]" if record.get("group") else ""),
            *(format_seconds(getattr(stats, name)) for name in ("min", "max", "mean", "stddev", "median", "iqr")),
            stats.outliers,
            format_rate(stats.ops),
            str(stats.rounds),
            str(stats.iterations),
        ]
        if baseline is not None:
            row.append(_change_of_mean(stats, baseline.get(record["name"])))
        rows.append(row)
    return rows


def _change_of_mean(stats: BenchmarkStats, before: Mapping[str, Any] | None) -> str:
    if before is None:
        return "new"
    return format_change(relative_change(float(before["stats"]["mean"]), stats.mean))


def render_benchmarks(
    records: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]] | None = None,
    baseline_name: str = "",
) -> str:
    """The table text; with a baseline a last column shows the change of the mean."""
    from tabulate import tabulate

    headers = list(HEADERS)
    if baseline is not None:
        headers.append(f"mean vs {baseline_name}")
    return tabulate(
        benchmark_rows(records, baseline),
        headers=headers,
        tablefmt="simple",
        disable_numparse=True,
        colalign=("left",) + ("right",) * (len(headers) - 1),
    )
