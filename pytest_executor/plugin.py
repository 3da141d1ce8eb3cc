"""The pytest11 entry point of pytest-executor (``-p no:executor`` disables it).

Inert by default: unless an ``--executor-*`` option (or its ini twin) is set or
a collected test carries a ``job`` marker, the run is plain pytest — the only
work is one cheap check after collection.  When active, the collected items
are planned (:mod:`pytest_executor.plan._planner`) and a
:class:`~pytest_executor.run.controller.Controller` takes over the run loop.

In worker sessions (``PYTEST_EXECUTOR_WORKER`` set) the marker, options,
fixtures and the plan (``--executor-with-deps`` changes ``session.items``) are
the same, but the controller never starts.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_executor import WORKER_ENV, newhooks
from pytest_executor.config._state import STATE_KEY, PluginState
from pytest_executor.config.fixtures import async_engine, engine, engine_setting, session_engine
from pytest_executor.config.marker import MARKER, MARKER_DOC
from pytest_executor.config.options import add_options, any_option_set, validate_options

pytest_plugins = [
    "pytest_executor.benchmark._plugin",  # the job_benchmark fixture and its hooks
    "pytest_executor.compat._plugin",  # markers and options of other plugins, as job markers
    "pytest_executor.backends._factory",  # starts process/dask workers at session start
]

__all__ = ["async_engine", "engine", "engine_setting", "session_engine"]




def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the ``pytest_executor_*`` hooks (see :mod:`pytest_executor.newhooks`)."""
    pluginmanager.add_hookspecs(newhooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--executor-*`` options and their ini twins."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``job`` marker; validate the options early."""
    config.addinivalue_line("markers", MARKER_DOC)
    config.stash[STATE_KEY] = PluginState(
        settings=validate_options(config),
        options_set=any_option_set(config),
        worker=bool(os.environ.get(WORKER_ENV)),
    )
    _check_report_path(config.stash[STATE_KEY].settings["report"])
    if not config.stash[STATE_KEY].worker and not hasattr(config, "workerinput"):
        from pytest_executor.run._signals import sigterm_as_interrupt

        config.add_cleanup(sigterm_as_interrupt())  # the controller cleans up on SIGTERM as on Ctrl-C
    if config.pluginmanager.hasplugin("xdist"):  # optional integration, imported lazily
        from pytest_executor.xdist import register

        register(config)


def _check_report_path(path: str | None) -> None:
    """An unwritable ``--executor-report`` is a usage error before any test runs."""
    from pytest_executor.views.report import writable_path_problem

    problem = writable_path_problem(path) if path else None
    if problem:
        raise pytest.UsageError(f"--executor-report {path}: cannot write there: {problem}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember deselected tests: ``after=`` may name them."""
    if items:
        state = items[0].config.stash.get(STATE_KEY, None)
        if state is not None:
            state.deselected.extend(items)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Decide once whether the plugin is active; if so, plan the run."""
    config = session.config
    state = config.stash[STATE_KEY]
    if state.worker and os.environ.get("PYTEST_EXECUTOR_ONESHOT") == "1":
        return  # a subprocess worker collects one node id: its after= targets are elsewhere
    if not state.options_set and not any(
        item.get_closest_marker(MARKER) is not None for item in session.items
    ):
        return
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its controller schedules
        from pytest_executor.xdist import plan_on_worker

        plan_on_worker(session, state)
        return
    if state.worker and not state.settings["with-deps"]:
        return  # our worker plans only to pull in the same dependencies as the controller; none here
    from pytest_executor.plan._planner import choose_backends, plan_session, unused_fork_shared
    from pytest_executor.run._gc import collector_paused

    with collector_paused():  # the plan lives as long as the run: nothing to collect while it is made
        plan = plan_session(session, state.deselected, with_deps=state.settings["with-deps"])
    if plan.pulled_in:
        session.items[:] = plan.items
        _undeselect(config, plan.pulled_in)
    state.plan = plan
    if state.worker:
        return
    choose_backends(config, plan)
    unused = unused_fork_shared(config, plan)
    if unused is not None:
        state.notes.append(unused)
    from pytest_executor.run.controller import Controller
    from pytest_executor.views.report import run_metadata

    controller = Controller(config, plan, state.settings)
    controller.run.metadata = run_metadata(
        config,
        backend=state.settings["backend"] or "local",
        workers=state.settings["workers"],
        max_jobs=state.settings["max-jobs"],
        with_deps=state.settings["with-deps"],
        pulled_in=[item.nodeid for item in plan.pulled_in],
    )
    config.pluginmanager.register(controller, "executor-controller")
    from pytest_executor.config.options import IN_PROCESS_BACKENDS

    if any(backend not in IN_PROCESS_BACKENDS for backend in plan.backends):
        from pytest_executor.views._grouped_progress import GroupedProgress

        GroupedProgress.install(config, (item.nodeid for item in plan.items))
    from pytest_executor.views._run_view import RunView

    table = state.settings["table"] or "summary"
    view = RunView(config, timeline=state.settings["timeline"], summary=table != "none")
    config.pluginmanager.register(view, "executor-run-view")


def _undeselect(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Take items pulled back by ``--executor-with-deps`` out of the deselected count."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    deselected = getattr(reporter, "stats", {}).get("deselected")
    if deselected:
        pulled = {id(item) for item in items}
        deselected[:] = [item for item in deselected if id(item) not in pulled]
    state = config.stash[STATE_KEY]
    state.notes.append(
        f"executor: --executor-with-deps added {len(items)} "
        f"dependenc{'y' if len(items) == 1 else 'ies'} not selected: "
        + ", ".join(item.nodeid for item in items)
    )


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """Lines shown under pytest's "collected N items" line."""
    state = config.stash.get(STATE_KEY, None)
    return state.notes if state is not None else []


@pytest.hookimpl(trylast=True)
def pytest_executor_select_backend(item: pytest.Item) -> str:
    """Default backend: the ``job(backend=)`` argument, else the option, else local."""
    from pytest_executor.plan._planner import default_backend

    return default_backend(item)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the JSON report when asked to."""
    from pytest_executor.views.report import RUN_KEY, write_json

    run = session.config.stash.get(RUN_KEY, None)
    path = session.config.stash[STATE_KEY].settings["report"] if STATE_KEY in session.config.stash else None
    if run is not None and path:
        try:
            write_json(run, path, exitstatus)
        except OSError as error:  # e.g. the directory went away during the run: one line, same exit code
            session.config.stash[STATE_KEY].report_error = f"executor: cannot write the JSON report {path}: {error}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the job table chosen by ``--executor-table`` (default: summary)."""
    from pytest_executor.views.report import RUN_KEY, render_table

    run = config.stash.get(RUN_KEY, None)
    if run is None or config.option.collectonly:
        return
    settings = config.stash[STATE_KEY].settings
    width = terminalreporter._tw.fullwidth if hasattr(terminalreporter, "_tw") else None
    text = render_table(run, settings["table"] or "summary", width, full=config.option.verbose > 0)
    if text:
        terminalreporter.write_sep("-", "executor jobs")
        for line in text.splitlines():
            terminalreporter.write_line(line)
    error = config.stash[STATE_KEY].report_error
    if error:
        terminalreporter.write_line(error, red=True)
    elif settings["report"]:
        terminalreporter.write_line(f"executor: JSON report written to {settings['report']}")
