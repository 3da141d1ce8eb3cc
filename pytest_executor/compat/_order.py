"""pytest-order: ``@pytest.mark.order(...)`` becomes "runs after" edges that only order.

* ``order(n)`` / ``order(index=n)`` / ``order("first")`` ... ``order("last")``,
  ``order(-1)``: within the order scope (``--order-scope``: ``session``, the
  default, ``module`` or ``class``), tests with ``n >= 0`` run first by
  increasing ``n``, then the tests without a number, then those with negative
  numbers (``-1`` = ``"last"`` at the very end).  Each of these levels waits
  for the previous one to finish, so the order also holds in parallel runs.
  A test carrying ``before=``/``after=`` is placed by those alone.
* ``order(before=..., after=...)``: names as pytest-order resolves them — the
  end of a node id, matched from the test's own class, module or directory
  outwards (``test_b``, ``TestX::test_b``, ``test_other.py::test_b``,
  ``sub/test_other.py::test_b``; without ``[...]`` all instances), or a class
  name on a class marker.  A name that matches nothing is reported and ignored,
  as that plugin does.

Unlike pytest-dependency edges these never skip: a test runs after the tests
it is ordered after whatever their outcome, and regardless of whether they
were selected (:data:`pytest_executor.compat.ORDER_ONLY_KEY`).  Tests that carry
relative markers are left out of the numbered levels, so the two kinds of
markers cannot contradict each other.

With the plugin installed it still sorts the collected tests, and we add the
same edges, which agree with its order; without it we register the marker and
``--order-scope``, and the executor's dependency order does the sorting.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

import pytest

from . import ORDER_ONLY_KEY
from ._common import JOB, add_job

PLUGIN: Final = "pytest_order"
MARKER: Final = "order"
MARKER_DOC: Final = (
    "order(index=None, before=None, after=None): pytest-order's marker, honoured by pytest-executor: "
    "index orders tests (0, 1, ... first; -1 last; or 'first', 'second', ..., 'last'), before/after "
    "name tests to run before/after; the order holds in parallel runs."
)
NAMED: Final = {
    "first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5, "seventh": 6, "eighth": 7,
    "last": -1, "second_to_last": -2, "third_to_last": -3, "fourth_to_last": -4, "fifth_to_last": -5,
    "sixth_to_last": -6, "seventh_to_last": -7, "eighth_to_last": -8,
}
SCOPES: Final = ("session", "module", "class")

Edges = dict[pytest.Item, list[pytest.Item]]


def add_options(parser: pytest.Parser) -> None:
    """``--order-scope``, as pytest-order spells it."""
    parser.getgroup("order").addoption(
        "--order-scope", action="store", dest="order_scope", default=None,
        help="scope of ordering: 'session' (default), 'module' or 'class'.",
    )


def configure(config: pytest.Config) -> None:
    """Register the ``order`` marker."""
    config.addinivalue_line("markers", MARKER_DOC)


def needed(config: pytest.Config, markers: frozenset[str]) -> bool:
    """Only ``order`` markers order."""
    return MARKER in markers


def translate(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add order-only ``job(after=...)`` edges for every ``order`` marker."""
    scope = config.getoption("order_scope", None) or "session"
    if scope not in SCOPES:
        raise pytest.UsageError(f"--order-scope={scope!r} is not one of {', '.join(SCOPES)}")
    errors: list[str] = []
    edges: Edges = defaultdict(list)
    involved: set[pytest.Item] = set()
    for group in _groups(items, scope):
        _relative_edges(config, group, edges, involved)
        _level_edges([item for item in group if item not in involved], edges, errors)
    if errors:
        raise pytest.UsageError("invalid order markers:\n  " + "\n  ".join(errors))
    for item, before in edges.items():
        ids = list(dict.fromkeys(other.nodeid for other in before if other is not item))
        if ids:
            hard = _named_by_job(item)
            item.stash[ORDER_ONLY_KEY] = frozenset(i for i in ids if not _matches_any(i, hard))
            add_job(item, after=ids)


def _groups(items: list[pytest.Item], scope: str) -> list[list[pytest.Item]]:
    if scope == "session":
        return [items]
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        parts = item.nodeid.split("::")
        key = parts[0] if scope == "module" or len(parts) < 3 else "::".join(parts[:2])
        groups.setdefault(key, []).append(item)
    return list(groups.values())


def _index_of(item: pytest.Item, errors: list[str]) -> int | None:
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return None
    value = mark.args[0] if mark.args else mark.kwargs.get("index")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value in NAMED:
        return NAMED[value]
    errors.append(f"{item.nodeid}: order({value!r}) is neither an integer nor one of {', '.join(NAMED)}")
    return None


def _level_edges(group: list[pytest.Item], edges: Edges, errors: list[str]) -> None:
    """Numbered levels first, unnumbered next, negative last; each level after the previous."""
    levels: dict[tuple[int, int], list[pytest.Item]] = defaultdict(list)
    for item in group:
        index = _index_of(item, errors)
        key = (1, 0) if index is None else ((0, index) if index >= 0 else (2, index))
        levels[key].append(item)
    if set(levels) <= {(1, 0)}:
        return
    ordered = [levels[key] for key in sorted(levels)]
    for previous, level in zip(ordered, ordered[1:]):
        for item in level:
            edges[item].extend(previous)


def _relative_edges(config: pytest.Config, group: list[pytest.Item], edges: Edges, involved: set[pytest.Item]) -> None:
    """``before=``/``after=`` names resolved within ``group`` the way pytest-order resolves them."""
    by_last: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in group:
        by_last[_unparametrized(item.nodeid).rpartition("::")[2]].append(item)
    for item in group:
        for mark in item.iter_markers(MARKER):
            class_mark = _is_class_mark(item, mark)
            for key, after in (("before", False), ("after", True)):
                for label in _labels(mark.kwargs.get(key)):
                    others = _resolve(label, item, class_mark, by_last, group)
                    if not others:
                        _warn(config, f"cannot execute '{item.name}' relative to others: '{label}' - ignoring the marker")
                    for other in others:
                        first, then = (other, item) if after else (item, other)
                        edges[then].append(first)
                        involved.add(item)


def _labels(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(label) for label in value]  # type: ignore[attr-defined]


def _unparametrized(nodeid: str) -> str:
    return nodeid.rpartition("[")[0] if nodeid.endswith("]") and "[" in nodeid else nodeid


def _is_class_mark(item: pytest.Item, mark: pytest.Mark) -> bool:
    parent = getattr(item, "parent", None)
    return getattr(item, "cls", None) is not None and parent is not None and parent.get_closest_marker(MARKER) == mark


def _resolve(
    label: str, item: pytest.Item, class_mark: bool, by_last: dict[str, list[pytest.Item]], group: list[pytest.Item]
) -> list[pytest.Item]:
    """Tests whose id ends with ``label`` and whose remaining prefix encloses ``item``."""
    last = label.split("/")[-1].split("::")[-1]
    found = []
    for other in by_last.get(last, ()):
        for candidate in (other.nodeid, _unparametrized(other.nodeid)):
            if candidate.endswith(label):
                start = candidate[: len(candidate) - len(label)]
                if not (class_mark and start.count("::") == 2) and item.nodeid.startswith(start):
                    found.append(other)
                break
    if found or not class_mark or "::" in label:
        return found
    return [  # a class marker naming another class: all of that class's tests
        other for other in group
        if other.nodeid.count("::") == 2
        and (cls := other.nodeid.rpartition("::")[0]).endswith(label)
        and item.nodeid.startswith(cls[: len(cls) - len(label)])
    ]


def _named_by_job(item: pytest.Item) -> list[str]:
    """``after=`` names of the item's ``job`` markers (they skip; ours must not mask them)."""
    names: list[str] = []
    for mark in item.iter_markers(JOB):
        after = mark.kwargs.get("after", ())
        names.extend([after] if isinstance(after, str) else [str(name) for name in after])
    return names


def _matches_any(nodeid: str, names: list[str]) -> bool:
    base = _unparametrized(nodeid)
    return any(
        name in (nodeid, base) or nodeid.endswith(("::" + name, "/" + name)) or base.endswith(("::" + name, "/" + name))
        for name in names
    )


def _warn(config: pytest.Config, message: str) -> None:
    if config.pluginmanager.hasplugin(PLUGIN):
        return  # pytest-order says it itself
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"WARNING: {message}.")
