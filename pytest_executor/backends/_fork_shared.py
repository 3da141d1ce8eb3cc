"""Session fixtures shared copy-on-write by a forked worker's children (``--executor-fork-shared``).

By default the forked backend sets up every fixture, session-scoped ones too,
in each test's child, so nothing leaks from one test to the next.  A suite may
opt in named session fixtures whose value is safe to share: the warm worker
sets such a fixture up once, before it forks the first child that uses it,
every child then finds it set up (pytest's own fixture cache) and inherits its
value copy-on-write, and the worker tears it down at the end of its session.

What a child changes in the value's memory stays in that child; what the
fixture reaches outside the process (files, a database, a server, an open
socket) is shared by all the children, hence the opt-in.  A shared fixture's
session-scoped dependencies are set up in the worker with it, so they are
shared as well.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from typing import Any, final

import pytest

_OUTCOMES = (Exception, pytest.fail.Exception, pytest.skip.Exception)
"""What a fixture's setup may raise that pytest keeps in the fixture's cache and reports per test."""


_MACHINERY = tuple(f"{os.sep}{name}{os.sep}" for name in ("_pytest", "pluggy", "pytest_executor"))


def _definitions(session: pytest.Session, name: str) -> list[Any]:
    """Every fixture called ``name`` that pytest registered (conftests, plugins, collected modules)."""
    manager: Any = session._fixturemanager
    found: list[Any] = []
    # Private registries (pytest changed them across versions): by node (9), by node id, flat (< 9).
    for attribute in ("_arg2node2fixturedefs", "_arg2nodeid2fixturedefs"):
        for definitions in getattr(manager, attribute, {}).get(name, {}).values():
            found.extend(d for d in definitions if d not in found)
    found.extend(d for d in getattr(manager, "_arg2fixturedefs", {}).get(name, ()) if d not in found)
    for item in session.items:  # and whatever a collected test resolves the name to
        info: Any = getattr(item, "_fixtureinfo", None)
        if info is not None:
            found.extend(d for d in info.name2fixturedefs.get(name, ()) if d not in found)
    return found


def check_shared_fixtures(session: pytest.Session, names: Sequence[str]) -> None:
    """Refuse names that are no session-scoped, unparametrized fixture of the collected suite."""
    for name in names:
        definitions = _definitions(session, name)
        where = "--executor-fork-shared / ini executor_fork_shared"
        if not definitions:
            raise pytest.UsageError(f"{where}: no fixture named {name!r} was collected")
        for definition in definitions:
            origin = f"{name!r} (in {getattr(definition.func, '__module__', None) or definition.baseid})"
            if definition.scope != "session":
                raise pytest.UsageError(
                    f"{where}: fixture {origin} is {definition.scope}-scoped; only session-scoped "
                    "fixtures can be shared by the forked children"
                )
            if definition.params is not None:
                raise pytest.UsageError(
                    f"{where}: fixture {origin} is parametrized; a shared fixture must have one value "
                    "(each child would tear the shared instance down to build another)"
                )


@final
class SharedFixtures:
    """Sets the opted-in session fixtures up in the worker, once, before a child needs them."""

    def __init__(self, session: pytest.Session, names: Sequence[str]) -> None:
        self._session = session
        self._names = tuple(names)

    def prepare_all(self, items: Sequence[pytest.Item]) -> list[str]:
        """Set up the shared fixtures that ``items`` use, each with the first item using it; the names set up."""
        prepared: list[str] = []
        for item in items:
            prepared.extend(name for name in self.prepare(item) if name not in prepared)
        return prepared

    def prepare(self, item: pytest.Item) -> list[str]:
        """Set up in this (the parent) process the shared fixtures ``item`` uses; the names set up now.

        A setup that fails is kept in pytest's fixture cache: every test using
        the fixture reports that error at its setup, as in a single process.
        """
        info: Any = getattr(item, "_fixtureinfo", None)
        if info is None or not self._names or not hasattr(item, "_initrequest"):
            return []
        todo = []
        for name in self._names:
            definitions = info.name2fixturedefs.get(name)
            if definitions and definitions[-1].cached_result is None:
                todo.append(name)
        if not todo:
            return []
        state: Any = self._session._setupstate
        if self._session not in state.stack:
            # The session node is set up here, as the first test's setup would: the shared
            # fixtures register their teardown on it, which the worker runs at its end.
            state.stack[self._session] = ([self._session.teardown], None)
        function: Any = item  # a pytest.Function: it has a fixture request
        function._initrequest()
        try:
            for name in todo:
                try:
                    function._request.getfixturevalue(name)
                except _OUTCOMES:
                    pass  # cached by pytest: reported by each test that uses the fixture
        finally:
            # as after a test: the child that runs the item makes its own request
            function._request = False
            function.funcargs = None
        return todo

    def teardown(self) -> str | None:
        """Tear the shared fixtures down (in the worker, after its last test); the error, if one failed."""
        state: Any = self._session._setupstate
        if self._session not in state.stack:
            return None
        try:
            state.teardown_exact(None)
        except Exception as error:  # pytest's outcomes and exception groups included
            # The fixture's frames only: pytest's, pluggy's and ours say nothing about the failure.
            frames = [f for f in traceback.extract_tb(error.__traceback__) if not any(p in f.filename for p in _MACHINERY)]
            return "".join([*traceback.format_list(frames), *traceback.format_exception_only(error)]).rstrip()
        return None

    def forget_in_child(self) -> None:
        """In a child: never run the shared fixtures' teardown (the worker runs it once, at its end).

        The child's own session fixtures register their teardown on the session
        node afresh, so it still runs them when its one test is done.
        """
        state: Any = self._session._setupstate
        if self._session in state.stack:
            state.stack[self._session] = ([self._session.teardown], None)


__all__ = ["SharedFixtures", "check_shared_fixtures"]
