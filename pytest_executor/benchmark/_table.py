"""The end-of-run benchmark table (tabulate), sorted, with scaled units.

Pure: takes benchmark records (the fixture's plain data) and an optional
baseline, returns text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_executor.views._fit import render_simple, shorten_left

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


KEPT_FIRST: tuple[str, ...] = ("benchmark", "mean", "min", "median", "stddev", "ops/s", "rounds")
"""Columns kept, in this order, when the table must be narrowed to the terminal."""


def render_benchmarks(
    records: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]] | None = None,
    baseline_name: str = "",
    sort: str | None = None,
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> str:
    """The table text; with a baseline a last column shows the change of the mean.

    ``sort`` is one of :data:`SORT_KEYS`; ``columns`` labels of :data:`COLUMNS` to keep.

    With a ``width`` a wider table keeps only the columns that fit (benchmark,
    then mean, min, median, stddev, ops/s, rounds; the comparison always),
    with names shortened from the left, and says which columns it left out.
    """
    headers = list(HEADERS)
    rows = benchmark_rows(records, baseline, sort)
    if baseline is not None:
        headers.append(f"mean vs {baseline_name}")
    if columns is not None:
        keep = [0] + [HEADERS.index(COLUMNS[label]) for label in columns] + ([len(HEADERS)] if baseline is not None else [])
        headers = [headers[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
    text = _tabulate(headers, rows)
    if width is None or max(map(len, text.splitlines())) <= width:
        return text
    keep = _columns_that_fit(headers, rows, width, compared=baseline is not None)
    narrow = [[row[i] for i in keep] for row in rows]
    names = max(8, width - sum(_width(headers, rows, i) + 2 for i in keep[1:]))
    for row in narrow:
        row[0] = shorten_left(row[0], names)
    left_out = [headers[i] for i in range(len(headers)) if i not in keep]
    table = render_simple([headers[i] for i in keep], narrow, right=range(1, len(keep)))
    return table + f"\n(left out to fit the terminal, -v shows them: {', '.join(left_out)})"


def _tabulate(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from tabulate import tabulate

    return tabulate(
        rows, headers=headers, tablefmt="simple", disable_numparse=True,
        colalign=("left",) + ("right",) * (len(headers) - 1),
    )


def _width(headers: Sequence[str], rows: Sequence[Sequence[str]], index: int) -> int:
    return max([len(headers[index]), *(len(row[index]) for row in rows)])


def _columns_that_fit(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, compared: bool) -> list[int]:
    """Column positions to keep, in table order: the comparison, then :data:`KEPT_FIRST` while they fit."""
    # --benchmark-columns may have dropped some of them already
    wanted = [headers.index(name) for name in KEPT_FIRST if name in headers]
    if compared:
        wanted.insert(1, len(headers) - 1)
    keep = [0]
    room = width - 24  # the benchmark names keep at least this much
    for index in wanted[1:]:
        room -= _width(headers, rows, index) + 2
        if room < 0:
            break
        keep.append(index)
    return sorted(keep)
