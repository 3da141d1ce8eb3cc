"""Helpers shared by the translators: reading markers, adding ``job`` markers."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_executor.config.options import read_ini

JOB: str = "job"


def marker_names(items: list[pytest.Item]) -> frozenset[str]:
    """Names of all markers on the items and their parents, each node looked at once.

    Lets a translator return at once when its markers appear nowhere (the common case).
    """
    names: set[str] = set()
    seen: set[int] = set()
    for item in items:
        node: Any = item
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            names.update(mark.name for mark in node.own_markers)
            node = node.parent
    return frozenset(names)


def job_sets(item: pytest.Item, keyword: str) -> bool:
    """True when a ``job`` marker on any level of ``item`` sets ``keyword`` already."""
    return any(keyword in mark.kwargs for mark in item.iter_markers(JOB))


def add_job(item: pytest.Item, **kwargs: Any) -> None:
    """Add ``job(**kwargs)`` to ``item``, leaving keywords the user set on a ``job`` marker alone.

    ``after`` lists merge across markers, so they are always added.
    """
    chosen = {key: value for key, value in kwargs.items() if key == "after" or not job_sets(item, key)}
    if chosen:
        item.add_marker(pytest.mark.job(**chosen))


def marker_value(mark: pytest.Mark, keyword: str, position: int, default: Any) -> Any:
    """A marker argument given by keyword or at ``position``, else ``default``."""
    if keyword in mark.kwargs:
        return mark.kwargs[keyword]
    if len(mark.args) > position:
        return mark.args[position]
    return default


def ini_or_option(config: pytest.Config, dest: str, ini: str | None = None) -> Any:
    """An option's value from the command line, else from the ini file, else ``None``."""
    value = config.getoption(dest, None)
    if value is not None:
        return value
    if ini is None:
        return None
    try:
        return read_ini(config, ini)
    except ValueError:  # not registered: the other plugin owns it and is not loaded
        return None
