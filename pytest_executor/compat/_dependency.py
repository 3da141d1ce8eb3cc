"""pytest-dependency: ``@pytest.mark.dependency(name=, depends=, scope=)`` become ``after=`` edges.

Names follow that plugin's rules.  A test marked ``dependency`` (every test
with the ini flag ``automark_dependency``) is known in each scope by its
``name=`` if it has one, else by its node id (``session``, ``package``), its id
inside the module (``module``: ``test_a``, ``TestX::test_a``) or inside the
class (``class``: ``test_a``).  ``depends=`` names are looked up in the
marker's ``scope`` (default ``module``), among the tests of the same module,
class, package or session.

A name that matches no known test skips the test (``test_b depends on
test_a``), as in that plugin (``--ignore-unknown-dependency`` runs it instead).
A name that matches becomes a ``job(after=...)`` edge: the dependency runs
first wherever it was collected, also in parallel runs, and the test is
skipped when it failed, errored, was skipped, xfailed or was not selected.

We always act, the plugin installed or not: when it is installed its own hooks
are switched off for the run, since it would skip tests whose dependency ran
in another process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import pytest
from _pytest.nodes import Node

from ._common import add_job

PLUGIN: Final = "dependency"
MARKER: Final = "dependency"
MARKER_DOC: Final = (
    "dependency(name=None, depends=[], scope='module'): pytest-dependency's marker, honoured by "
    "pytest-executor: the test runs after the tests it depends on and is skipped if one did not pass."
)
SCOPES: Final = ("session", "package", "module", "class")


def add_options(parser: pytest.Parser) -> None:
    """``--ignore-unknown-dependency`` and the ini flag ``automark_dependency``."""
    parser.addini("automark_dependency", "Add the dependency marker to all tests automatically", type="bool", default=False)
    parser.getgroup("dependency").addoption(
        "--ignore-unknown-dependency", action="store_true", default=False,
        help="run tests whose dependency is not known instead of skipping them",
    )


def configure(config: pytest.Config) -> None:
    """Register the marker; switch the installed plugin's own checks off."""
    config.addinivalue_line("markers", MARKER_DOC)


def take_over(config: pytest.Config) -> None:
    """Unregister an installed pytest-dependency: its results are per process."""
    plugin = config.pluginmanager.get_plugin(PLUGIN)
    if plugin is not None:
        config.pluginmanager.unregister(plugin, PLUGIN)


_SCOPE_TYPES: Final[dict[str, type[Node]]] = {
    "session": pytest.Session, "package": pytest.Package, "module": pytest.Module, "class": pytest.Class,
}


def _scope_node(item: pytest.Item, scope: str) -> Node | None:
    return item.getparent(_SCOPE_TYPES[scope])


def default_name(nodeid: str, scope: str) -> str:
    """The name pytest-dependency gives an unnamed test in ``scope``."""
    if scope in ("session", "package"):
        return nodeid
    parts = nodeid.split("::", 2 if scope == "class" else 1)
    return parts[-1]


def _known(items: Iterable[pytest.Item], automark: bool) -> list[pytest.Item]:
    return [item for item in items if automark or item.get_closest_marker(MARKER) is not None]


def _names_in(item: pytest.Item, scope: str) -> str:
    mark = item.get_closest_marker(MARKER)
    name = mark.kwargs.get("name") if mark is not None else None
    return str(name) if name else default_name(item.nodeid, scope)


def needed(config: pytest.Config, markers: frozenset[str]) -> bool:
    """Only tests marked ``dependency`` can depend on others."""
    return MARKER in markers


def translate(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add ``job(after=...)`` for every resolved ``depends=`` name; skip on unknown ones."""
    automark = bool(config.getini("automark_dependency"))
    ignore_unknown = bool(config.getoption("ignore_unknown_dependency", False))
    known = _known(items, automark)
    index: dict[tuple[str, int, str], list[pytest.Item]] = {}
    errors: list[str] = []
    for item in items:
        mark = item.get_closest_marker(MARKER)
        depends = mark.kwargs.get("depends") if mark is not None else None
        if not depends:
            continue
        scope = mark.kwargs.get("scope", "module") if mark is not None else "module"
        if scope not in SCOPES:
            errors.append(f"{item.nodeid}: dependency(scope={scope!r}) is not one of {', '.join(SCOPES)}")
            continue
        if isinstance(depends, str):
            depends = [depends]
        node = _scope_node(item, scope)
        found: list[str] = []
        unknown: list[str] = []
        for name in depends:
            matches = _lookup(index, known, scope, node, str(name)) if node is not None else []
            matches = [match for match in matches if match is not item]
            if matches:
                found.extend(match.nodeid for match in matches)
            else:
                unknown.append(str(name))
        if found:
            add_job(item, after=list(dict.fromkeys(found)))
        if unknown and not ignore_unknown:
            item.add_marker(pytest.mark.skip(reason=f"{item.name} depends on {unknown[0]}"))
    if errors:
        raise pytest.UsageError("invalid dependency markers:\n  " + "\n  ".join(errors))


def _lookup(
    index: dict[tuple[str, int, str], list[pytest.Item]],
    known: list[pytest.Item],
    scope: str,
    node: Node,
    name: str,
) -> list[pytest.Item]:
    """Known tests inside ``node`` called ``name`` in ``scope`` (index built once per scope node)."""
    key = (scope, id(node), "")
    if key not in index:
        index[key] = []
        for candidate in known:
            if _scope_node(candidate, scope) is node:
                index.setdefault((scope, id(node), _names_in(candidate, scope)), []).append(candidate)
    return index.get((scope, id(node), name), [])
