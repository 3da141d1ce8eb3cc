"""One progress line per file on worker backends, as in a serial run.

Workers finish tests in any order, so pytest's reporter, which starts a new
line whenever the file changes, would print a file many times, each with a
few results (and sometimes none).  This module holds back the terminal
reporter's view of each test — only the reporter's: junitxml, ``-x``, the
cache and every other plugin get the reports at once — and hands a file's
tests to it together once the last of them has finished, in the order they
finished.  Whatever is still held at the end of the run loop (``-x``,
Ctrl-C) is handed over then, before the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterable
from typing import Any, final

import pytest

_HOOKS = ("pytest_runtest_logstart", "pytest_runtest_logreport", "pytest_runtest_logfinish")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@final
class GroupedProgress:
    """A plugin that feeds the terminal reporter one whole file at a time."""

    def __init__(self, config: pytest.Config, reporter: Any, nodeids: Iterable[str]) -> None:
        self._config = config
        self._remaining = Counter(_file_of(nodeid) for nodeid in nodeids)
        self._held: dict[str, list[tuple[Callable[..., Any], tuple[Any, ...]]]] = {}
        # pluggy calls an implementation with positional arguments in the order of its argnames;
        # swapping the reporter's implementations (and only them) is what holds its view back.
        for name in _HOOKS:
            for impl in getattr(config.hook, name).get_hookimpls():
                if impl.plugin is reporter:
                    impl.function = self._holder(name, impl.function, tuple(impl.argnames))

    @classmethod
    def install(cls, config: pytest.Config, nodeids: Iterable[str]) -> GroupedProgress | None:
        """Start grouping if the terminal shows one line per file (not ``-v``, not ``-q -q``)."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.option.verbose > 0 or not getattr(reporter, "showfspath", False):
            return None
        grouped = cls(config, reporter, nodeids)
        config.pluginmanager.register(grouped, "executor-grouped-progress")
        return grouped

    def _holder(self, name: str, original: Callable[..., Any], argnames: tuple[str, ...]) -> Callable[..., Any]:
        def hold(*args: Any) -> None:
            given = dict(zip(argnames, args))
            nodeid = given["report"].nodeid if "report" in given else given["nodeid"]
            path = _file_of(nodeid)
            self._held.setdefault(path, []).append((original, args))
            if name == "pytest_runtest_logfinish":
                self._remaining[path] -= 1
                if self._remaining[path] <= 0:
                    self._release(path)

        return hold

    def _release(self, path: str) -> None:
        for original, args in self._held.pop(path, []):
            original(*args)

    def release_all(self) -> None:
        """Hand everything still held to the reporter, file by file."""
        for path in list(self._held):
            self._release(path)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        """Release what is held once the run loop ends, however it ends.

        ``trylast``: the innermost wrapper, so the reporter's own wrapper (which
        writes the final ``[100%]``) sees everything.
        """
        try:
            return (yield)
        finally:
            self.release_all()
