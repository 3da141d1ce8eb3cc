"""Make text tables fit the terminal: shorten node ids from the left, abbreviate ``after`` lists.

Pure string work for :func:`pytest_executor.views.report.render_table`; the table
layout is tabulate's ``simple`` format (columns as wide as their widest cell,
two spaces between them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_executor.plan.dag import split_param

ELLIPSIS = "…"
_GAP = 2  # spaces between columns in tabulate's "simple" format


def shorten_left(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` characters, marked with ``…``."""
    if len(text) <= width:
        return text
    return ELLIPSIS + text[len(text) - width + 1 :] if width > 1 else ELLIPSIS


def shorten_right(text: str, width: int) -> str:
    """``text`` cut from the right to ``width`` characters, marked with ``…``."""
    if len(text) <= width:
        return text
    return text[: width - 1] + ELLIPSIS if width > 1 else ELLIPSIS


def abbreviate_names(names: Sequence[str]) -> str:
    """``after`` names, with the instances of one parametrised test folded: ``test_x[…] ×5``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        base, param = split_param(name)
        groups.setdefault(base if param else name, []).append(name)
    parts = [
        members[0] if len(members) == 1 else f"{base}[{ELLIPSIS}] ×{len(members)}"
        for base, members in groups.items()
    ]
    return ", ".join(parts)


def fit_columns(
    headers: Sequence[str], rows: list[list[str]], width: int, shrink: Sequence[tuple[int, str, int]]
) -> list[list[str]]:
    """Shorten cells until the table is at most ``width`` characters wide.

    ``shrink`` lists steps ``(column, "left"|"right", narrowest)``, taken in
    order while the table is too wide; a column may appear in several steps
    with lower floors.  Other columns keep their text.
    """
    widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    for index, side, narrowest in shrink:
        if excess <= 0:
            break
        target = max(len(headers[index]), narrowest, widths[index] - excess)
        if target >= widths[index]:
            continue
        cut = shorten_left if side == "left" else shorten_right
        for row in rows:
            row[index] = cut(row[index], target)
        excess -= widths[index] - target
        widths[index] = target
    return rows


def render_simple(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """A table like tabulate's ``simple`` format, without its header padding.

    Columns are left-aligned, those in ``right`` right-aligned.
    """
    widths = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in range(len(headers))]
    gap = " " * _GAP
    rightward = set(right)

    def line(cells: Sequence[str]) -> str:
        return gap.join(
            cell.rjust(w) if i in rightward else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), gap.join("-" * w for w in widths), *(line(row) for row in rows)])
