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


SORT_KEYS: tuple[str, ...] = ("min", "max", "mean", "stddev", "name", "fullname")
"""Orders the table may be sorted by (within each group)."""
COLUMNS: dict[str, str] = {
    "min": "min", "max": "max", "mean": "mean", "stddev": "stddev", "median": "median", "iqr": "IQR",
    "outliers": "outliers", "ops": "ops/s", "rounds": "rounds", "iterations": "iterations",
}
"""Column labels accepted by :func:`parse_columns` -> their headers."""


def parse_columns(text: str) -> tuple[str, ...]:
    """``"min, mean,ops"`` -> ``("min", "mean", "ops")``; ``ValueError`` names an unknown label."""
    labels = tuple(label.strip().lower() for label in text.split(",") if label.strip())
    unknown = [label for label in labels if label not in COLUMNS]
    if unknown or not labels:
        shown = ", ".join(unknown) if unknown else repr(text)
        raise ValueError(f"unknown column(s) {shown}; valid: {', '.join(COLUMNS)}")
    return labels


def sort_key(record: Mapping[str, Any], by: str | None = None) -> tuple[str, Any, str]:
    """Group first, then ``by`` (default: fastest mean first), then name."""
    if by in ("name", "fullname"):
        value: Any = record["name"].rpartition("::")[2] if by == "name" else record["name"]
    else:
        value = float(record["stats"][by or "mean"])
    return (record.get("group") or "", value, record["name"])


def benchmark_rows(
    records: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]] | None = None,
    sort: str | None = None,
) -> list[list[str]]:
    """One row per benchmark in :data:`HEADERS` order (+ a change column with a baseline)."""
    rows = []
    for record in sorted(records, key=lambda record: sort_key(record, sort)):
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
    sort: str | None = None,
    columns: Sequence[str] | None = None,
) -> str:
    """The table text; with a baseline a last column shows the change of the mean.

    ``sort`` is one of :data:`SORT_KEYS`; ``columns`` labels of :data:`COLUMNS` to keep.
    """
    from tabulate import tabulate

    headers = list(HEADERS)
    rows = benchmark_rows(records, baseline, sort)
    if baseline is not None:
        headers.append(f"mean vs {baseline_name}")
    if columns is not None:
        keep = [0] + [HEADERS.index(COLUMNS[label]) for label in columns] + ([len(HEADERS)] if baseline is not None else [])
        headers = [headers[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
    return tabulate(
        rows,
        headers=headers,
        tablefmt="simple",
        disable_numparse=True,
        colalign=("left",) + ("right",) * (len(headers) - 1),
    )
