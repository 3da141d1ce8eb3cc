"""Collect the test files an ``after=`` name points into, when the run did not collect them.

A run collects only what it was asked for (a file, a node id, ``--lf``'s
failed files, everything minus ``--ignore``...).  An ``after=`` name can point
outside that.  Rather than collecting the whole rootdir to tell a test that
exists but is outside the run from a typo, the resolver asks for exactly the
files a name can live in (the test's own module, and the file part of a node
id relative to the test's directory or the rootdir; see
:func:`pytest_executor.plan.dag.candidate_keys`), and :class:`FileCollector`
collects each such file at most once, as if it had been given on the command
line.  Collector nodes the session already built (directories with their
conftest fixtures, modules, classes) are reused, so a pulled-in test shares
its module- and class-scoped fixtures with the tests of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import final

import pytest
from _pytest.nodes import Node


class CollectFailed(Exception):
    """A file an ``after=`` name points into could not be collected (import error...)."""


@final
class FileCollector:
    """Collects whole test files on demand for one session (each file at most once)."""

    def __init__(self, session: pytest.Session, known: Iterable[pytest.Item]) -> None:
        self.session = session
        self.rootpath = session.config.rootpath
        self._nodes: dict[str, Node] = {}
        self._complete: set[Path] = set()
        self._tried: set[Path] = set()
        partial = _partially_collected_files(session.config)
        for item in known:
            self._remember(item)
        self._complete = {
            node.path for node in self._nodes.values()
            if isinstance(node, pytest.File) and node.path not in partial and node.path is not None
        }

    def is_complete(self, relpath: str) -> bool:
        """True when every test of that file is already known."""
        return self.rootpath / relpath in self._complete

    def collect(self, relpath: str) -> list[pytest.Item]:
        """The tests of file ``relpath`` (rootdir-relative) that were not known yet.

        Returns ``[]`` for a path that is not a file, a file already complete,
        or one tried before.  Raises :class:`CollectFailed` if it cannot be
        collected (the message says why).
        """
        path = self.rootpath / relpath
        if path in self._complete or path in self._tried or not relpath.endswith(".py") or not path.is_file():
            return []
        self._tried.add(path)
        with _as_initial_path(self.session, path):
            file_node = self._walk_to(path)
            if file_node is None:
                return []
            new = [item for item in self._expand(file_node) if item.nodeid not in self._nodes]
        for item in new:
            self._remember(item)
        self._complete.add(path)
        return new

    def _remember(self, item: pytest.Item) -> None:
        for node in item.listchain():
            self._nodes.setdefault(node.nodeid, node)

    def _known(self, node: pytest.Item | pytest.Collector) -> pytest.Item | pytest.Collector:
        """The node the session already has for this id (same type), else ``node``."""
        existing = self._nodes.get(node.nodeid)
        if isinstance(existing, (pytest.Item, pytest.Collector)) and type(existing) is type(node):
            return existing
        return node

    def _walk_to(self, path: Path) -> pytest.Collector | None:
        """The file's collector, reached from the deepest directory node the session has."""
        start = self._deepest_known_directory(path)
        if start is None:
            return None
        node: pytest.Collector = start
        while node.path != path:
            step = next(p for p in [path, *path.parents] if p.parent == node.path)
            child = next((c for c in self._children(node) if c.path == step), None)
            if not isinstance(child, pytest.Collector):
                return None
            node = child
        return node

    def _deepest_known_directory(self, path: Path) -> pytest.Collector | None:
        # The session itself is no start: collecting it would redo the whole run's collection.
        directories = [
            node for node in self._nodes.values()
            if isinstance(node, pytest.Collector) and not isinstance(node, (pytest.Session, pytest.File))
            and node.path in path.parents and node.path.is_dir()
        ]
        return max(directories, key=lambda node: len(node.path.parts), default=None)

    def _children(self, node: pytest.Collector) -> list[pytest.Item | pytest.Collector]:
        """Collect one level, reusing the nodes the session already built."""
        try:
            if isinstance(node, pytest.File):
                # Not through the collect-report hook: --lf's file filters would empty it.
                children = list(node.collect())
            else:
                report = _collect_report(node)
                children = list(report.result)
        except pytest.skip.Exception:
            return []
        except Exception as error:  # noqa: BLE001 - any import error of the user's module
            raise CollectFailed(f"could not collect {node.nodeid}: {type(error).__name__}: {error}") from None
        return [self._known(child) for child in children]

    def _expand(self, node: pytest.Item | pytest.Collector) -> Iterator[pytest.Item]:
        if isinstance(node, pytest.Item):
            yield node
            return
        assert isinstance(node, pytest.Collector)
        for child in self._children(node):
            yield from self._expand(child)


def _collect_report(node: pytest.Collector) -> pytest.CollectReport:
    """One level of collection through pytest's hook (conftest fixtures of directories register there)."""
    report: pytest.CollectReport = node.ihook.pytest_make_collect_report(collector=node)
    if report.failed:
        last = (report.longreprtext.strip().splitlines() or ["collection failed"])[-1]
        raise CollectFailed(f"could not collect {node.nodeid or node.path}: {last}")
    return report


def _partially_collected_files(config: pytest.Config) -> set[Path] | _Everything:
    """Files whose collection the run filtered (node-id arguments, ``--lf``)."""
    if config.getoption("lf", False):
        return _Everything()
    base = config.invocation_params.dir
    return {Path(os.path.normpath(base / arg.split("::", 1)[0])) for arg in config.args if "::" in arg}


@final
class _Everything:
    """A set that contains every path."""

    def __contains__(self, _: object) -> bool:
        return True


@contextmanager
def _as_initial_path(session: pytest.Session, path: Path) -> Iterator[None]:
    """Collect ``path`` as if given on the command line: ``--ignore``, ``norecursedirs`` and
    ``python_files`` do not hide a test that an ``after=`` names explicitly."""
    # Private attributes of pytest's Session; the second one exists from pytest 8 on.
    names = [name for name in ("_initialpaths", "_initialpaths_with_parents") if hasattr(session, name)]
    saved = {name: getattr(session, name) for name in names}
    extra = {"_initialpaths": {path}, "_initialpaths_with_parents": {path, *path.parents}}
    for name in names:
        setattr(session, name, frozenset(saved[name]) | extra[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(session, name, value)
