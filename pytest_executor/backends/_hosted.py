"""The ``process`` backend's worker side: a pytest session hosted as a worker state of the engine's pool.

:func:`host_session` is the ``host`` of an :class:`executor.engine.WorkerState`
(see :mod:`executor.engine.state`): in a worker of the engine's process pool
it runs ``pytest.main`` over the controller's arguments, and the session, once
collected, serves the engine's jobs from its run loop.  Each job hands the
session one item (:func:`run_task`) and is answered once the item's outcome
is known, with every event since the previous answer: the previous item's
teardown (deferred until the next item is known, so module and session
fixtures live as long as the items that need them) and this item's start,
reports and result.  :func:`shut_down` is the last job: its answer carries
the last teardown.  The session's logic is
:class:`~pytest_executor.backends.worker.WorkerSession`'s, the same as over a
pipe; :class:`EngineLink` stands in for its channel.

Why a job answers late (``defer_reply``): the session's stack is inside the
previous item's protocol, waiting to learn the next item before it tears
that one down; only the session's own loop can run the new item.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from typing import Any, Callable

import pytest

from executor._lifeline import end_tree_with_parent
from executor.engine.state import defer_reply, worker_id

from pytest_executor.backends._protocol import ENV_ONESHOT, ENV_WORKER

Serve = Callable[..., bool]
"""The ``serve(value, info=None, until=None)`` an engine hands a hosted state's host."""


def worker_label(wid: int | None, prefix: str = "w") -> str:
    """The plugin's name of engine worker ``wid`` (``w0``, ``w1``, ...; a replacement gets the next number)."""
    return f"{prefix}{(wid or 1) - 1}"


def worker_of_label(label: str | None, prefix: str = "w") -> int | None:
    """The engine's id of the worker named ``label`` (None for no or another kind of name)."""
    number = label[len(prefix):] if label and label.startswith(prefix) else ""
    return int(number) + 1 if number.isdigit() else None


class EngineLink:
    """What :class:`~pytest_executor.backends.worker.WorkerSession` talks to instead of a channel.

    ``send`` keeps the session's messages (its collection becomes the
    state's ``info``, its events are buffered); ``recv`` answers the pending
    job with the buffered events, then serves the engine until a job hands
    over the next message.
    """

    compact_reports = False
    """Whether the session may send plain passed reports compactly (:mod:`._compact`)."""

    def __init__(self, serve: Serve, *, compact_reports: bool = False) -> None:
        self._serve = serve
        self.compact_reports = compact_reports
        self.inbox: deque[tuple[str, dict[str, Any]]] = deque()
        self.reply: Callable[[Any], None] | None = None
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._info: dict[str, Any] | None = None
        self._serving = False
        self.fatal: str | None = None

    def send(self, name: str, **kwargs: Any) -> None:
        """Keep one message of the session for the engine."""
        if name == "collected":
            self._info = kwargs
        elif name == "fatal":
            self.fatal = str(kwargs.get("message", ""))
        elif name == "events":
            self._events.extend(kwargs["items"])
            if any(event in ("exit", "interrupt") for event, _ in kwargs["items"]):
                self.answer()  # the session ends now, without asking for another item
        elif name == "bye":
            self.answer()

    def recv(self) -> tuple[str, dict[str, Any]]:
        """Answer the pending job, then the next message a job hands over (``shutdown`` if the engine left)."""
        self.answer()
        if not self.inbox:
            until = lambda: bool(self.inbox)  # noqa: E731
            if not self._serving:
                self._serving = True
                served = self._serve(self, self._info or {}, until=until)
            else:
                served = self._serve(self, until=until)
            if not served:
                return ("shutdown", {})
        return self.inbox.popleft()

    def hand(self, name: str, kwargs: dict[str, Any]) -> None:
        """Inside a job: give the session its next message; the job is answered by :meth:`answer`."""
        self.reply = defer_reply()
        self.inbox.append((name, kwargs))

    def answer(self) -> None:
        """Answer the pending job with the events buffered since the previous answer."""
        reply, self.reply = self.reply, None
        if reply is not None:
            events, self._events = self._events, []
            reply(events)

    def close(self) -> None:
        """The session ended: answer a job still pending."""
        self.answer()


def run_task(link: EngineLink, task: tuple[int, int, str, float | None]) -> None:
    """A job: run one item ``(index, windex, nodeid, timeout)``; answered with the events since the last answer."""
    link.hand("run", {"tasks": [task]})


def shut_down(link: EngineLink) -> None:
    """The last job of a worker: tear down what is left; answered with the last events."""
    link.hand("shutdown", {})


class _HostedWorker:
    """Registered with ``pytest.main`` in the worker: turns the session into a worker over an :class:`EngineLink`."""

    def __init__(self, label: str, link: EngineLink) -> None:
        self.label = label
        self.link = link

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        """Become a worker session before the other plugins configure."""
        from pytest_executor.backends.worker import become_worker_session, limit_core_dumps

        limit_core_dumps()
        become_worker_session(config, self.label, self.link, oneshot=os.environ.get(ENV_ONESHOT) == "1")

    def pytest_internalerror(self, excrepr: Any) -> None:
        """Keep an internal error of a session that has not served yet: the controller shows it.

        (The worker's terminal writes to /dev/null.)
        """
        if not self.link._serving and self.link.fatal is None:
            self.link.fatal = "an internal error in its session:\n" + _last_lines(str(excrepr), _FATAL_LINES)


def host_session(args: list[str], basetemp: str, env: dict[str, str], prefix: str, serve: Serve, *,
                 compact_reports: bool = False, label: str | None = None) -> int:
    """The host of the ``process`` and ``dask`` backends' worker state: a pytest session over ``args``.

    ``basetemp`` is the controller's; this worker's is ``executor-<label>``
    inside it.  ``env`` is set first (conftests read ``PYTEST_EXECUTOR_WORKER``
    when imported).  ``prefix`` names the workers (``w0``, ...) unless ``label``
    names this one (a dask session is named by the controller).  ``compact_reports``:
    the runner decodes compact reports (:mod:`._compact`).
    """
    label = label or worker_label(worker_id(), prefix)
    os.environ.pop("PYTEST_CURRENT_TEST", None)
    os.environ.update(env)
    os.environ[ENV_WORKER] = label
    _forget_inherited_rewrite_hooks()
    _end_with_the_engine()
    link = EngineLink(serve, compact_reports=compact_reports)
    try:
        code = pytest.main([*args, f"--basetemp={os.path.join(basetemp, 'executor-' + label)}"],
                           plugins=[_HostedWorker(label, link)])
    finally:
        link.close()
    if not link._serving:  # the engine reports this as the state's setup error
        if link.fatal:
            raise RuntimeError(link.fatal)
        raise RuntimeError(f"its pytest session ended before it had collected (exit code {int(code)}, "
                           f"{_exit_name(code)}); run the same command without --executor-backend to see why")
    return int(code)


_FATAL_LINES = 40
"""Lines of a worker's internal error shown by the controller (its end: the error itself)."""


def _last_lines(text: str, count: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-count:] if len(lines) <= count else ["...", *lines[-count:]])


def _exit_name(code: int | pytest.ExitCode) -> str:
    try:
        return pytest.ExitCode(int(code)).name
    except ValueError:
        return "unknown"


def _forget_inherited_rewrite_hooks() -> None:
    """Drop the assertion-rewrite hook of a controller this worker was forked from (the session installs its own)."""
    with contextlib.suppress(Exception):
        from _pytest.assertion.rewrite import AssertionRewritingHook

        sys.meta_path[:] = [hook for hook in sys.meta_path if not isinstance(hook, AssertionRewritingHook)]


def _end_with_the_engine() -> None:
    """When the zygote (so the engine) dies, kill what the tests left running, detached ones too, then exit.

    The zygote kills every worker's tree when the engine dies, but a zygote
    killed outright (SIGKILL) cannot: the session asks for SIGTERM when its
    own parent dies and then ends its whole tree (:mod:`executor._lifeline`).
    """
    with contextlib.suppress(Exception):
        end_tree_with_parent()
