"""pytest-xdist integration: ``job(after=...)`` and ``exclusive=True`` hold under ``-n``.

Imported only when the ``xdist`` plugin is loaded (``plugin.py`` checks
``pluginmanager.hasplugin("xdist")``); this module imports nothing from xdist at
import time, so the plugin works with pytest-xdist absent or ``-p no:xdist``.
It holds the registration and the controller's hook object and stays light
(an unmarked run pays for little more than importing it); the roles live in
:mod:`~pytest_executor.xdist._scheduler` (the pure dispatch rules),
:mod:`~pytest_executor.xdist._link` (graph files and the socket link),
:mod:`~pytest_executor.xdist._worker` (planning, gates and skips in workers)
and :mod:`~pytest_executor.xdist._controller` (the ``Scheduling`` object and
the job records), each imported when first needed.

Where the graph comes from
--------------------------
Under xdist the controller never collects; the workers do, and only they hold
the items and their markers.  Each worker therefore runs the plugin's normal
planning (:func:`pytest_executor.plan._planner.build_plan` — the same ``after=``
resolution, cycle and unknown-name errors as a serial run) right after its
collection, and writes the resolved graph as node indices to a JSON file in a
private rendezvous directory that the controller handed it through
``workerinput``.  xdist sends a worker's ``collectionfinish`` event only after
our hook has returned, so when the scheduler receives a collection the graph
file is already complete — no race and no extra round trip.  A worker with
nothing to plan writes no file, and the controller then hands the run to
xdist's own scheduler: an unmarked suite pays one ``os.path.exists`` per worker.
(Running a second collection on the controller would double the start-up cost
of every run; xdist's event channel rejects unknown event names, so it cannot
carry the graph.)

Talking back to the workers
---------------------------
An xdist worker starts a test only once it holds the *next* one too (for
fixture teardown), so a scheduler that sent a test strictly after its
dependencies completed could leave a worker stuck on its last test while
everything else waits for that very test.  The pure core
(:mod:`pytest_executor.xdist._scheduler`) solves this with *tickets*: a test
may be sent early, behind its dependencies on the same worker (FIFO order runs
them first: chains stay on one worker without waiting) or, to keep a worker
moving, with a wait list of tests running elsewhere.  When the graph has
dependencies or exclusive tests, each worker connects back to the controller
over a local socket (Unix socket, else loopback TCP, with a random token).  The
controller sends each ticket there before the test itself and tells a worker
the outcome of every test on a ticket's wait list when it completes.  A
worker-side hook holds the test until those outcomes arrived, then skips it —
with the very reason a serial run gives — if a dependency did not pass.

``--dist`` modes with markers
-----------------------------
``load`` and ``worksteal`` become dependency-aware load balancing;
``loadscope``/``loadfile``/``loadgroup`` keep their grouping (every scope,
file or ``xdist_group`` runs on one worker) and add the dependency rules;
``each`` runs every test on every worker, so dependencies are honoured inside
each worker (topological order, skip on a failed dependency) and
``exclusive`` means nothing there.  A header line says which scheduler runs.

Records
-------
The controller rebuilds one :class:`~pytest_executor.views.report.JobRecord` per test
from the graph and the reports the workers send, so ``--executor-table``,
``--executor-report`` and ``--executor-timeline`` work with the worker id
(``gw0``...) in the worker column.  The ``pytest_executor_job_*`` hooks need
items and are therefore not called on an xdist controller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

import pytest

from pytest_executor.xdist._input import INPUT_KEY

if TYPE_CHECKING:
    from pytest_executor.xdist._controller import DependencyScheduling
    from pytest_executor.xdist._link import Rendezvous
    from pytest_executor.config._state import PluginState

CONFLICTING_OPTIONS: Final = {
    "backend": "xdist already runs the tests in its worker processes",
    "workers": "-n already sets the number of workers",
    "dask-address": "it only applies to --executor-backend=dask",
    "max-jobs": "-n already bounds how many tests run at once",
}
"""Executor options that make no sense together with ``-n``, and why."""


# ----------------------------------------------------------------- registration


def register(config: pytest.Config) -> None:
    """Plug the xdist integration into this process (controller or worker side)."""
    if hasattr(config, "workerinput"):
        return  # workers: plan_on_worker() registers what an active plugin needs
    if config.getoption("collectonly", False) or not _distributing(config):
        return
    _reject_conflicting_options(config)
    config.pluginmanager.register(ControllerSide(config), "executor-xdist-controller")


def _distributing(config: pytest.Config) -> bool:
    """True when xdist will run the tests in workers (``-n N`` with N > 0, ``--dist``, ``--tx``)."""
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def _reject_conflicting_options(config: pytest.Config) -> None:
    from pytest_executor.config.options import find_option, raw_option

    for name, why in CONFLICTING_OPTIONS.items():
        value, source = raw_option(config, name)
        if value is None:
            continue
        option = find_option(name)
        where = f"{option.cli}={value}" if source == option.cli else f"{option.ini} = {value} (ini file)"
        raise pytest.UsageError(
            f"{where} cannot be combined with pytest-xdist's -n/--dist: {why}. "
            f"Drop {option.cli if source == option.cli else 'the ' + option.ini + ' ini setting'} "
            "to run under xdist, or drop -n (or pass -n 0 / -p no:xdist) to use the executor's own workers."
        )


def plan_on_worker(session: pytest.Session, state: PluginState) -> None:
    """Plan an xdist worker's collection and publish it (see :mod:`pytest_executor.xdist._worker`)."""
    from pytest_executor.xdist._worker import plan_and_publish

    plan_and_publish(session, state)


@final
class ControllerSide:
    """Plugin object on the xdist controller: rendezvous, scheduler factory, records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rendezvous: Rendezvous | None = None
        self.scheduler: DependencyScheduling | None = None

    def pytest_configure_node(self, node: Any) -> None:
        """Tell each worker where the rendezvous is (before it starts)."""
        if self.rendezvous is None:
            from pytest_executor.xdist._link import Rendezvous

            self.rendezvous = Rendezvous()
        node.workerinput[INPUT_KEY] = {
            "dir": self.rendezvous.directory,
            "address": self.rendezvous.address,
            "token": self.rendezvous.token,
            "dist": self.config.getoption("dist"),
        }

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Our scheduler: xdist's own until a worker's graph asks for more."""
        hook = config.pluginmanager.subset_hook_caller(
            "pytest_xdist_make_scheduler", remove_plugins=[self]
        )

        def fallback() -> Any:
            return hook(config=config, log=log)

        from pytest_executor.xdist._controller import DependencyScheduling

        self.scheduler = DependencyScheduling(config, log, fallback, self)
        return self.scheduler

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """A worker that stopped early (``-x``) leaves its tests cancelled, releasing waiters."""
        if error is None and self.scheduler is not None:
            self.scheduler.node_stopped(node)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        """Note when a test started."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.started(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each test's reports for its record and outcome."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.reported(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """Tests that never ran are cancelled in the records (before the JSON is written)."""
        recorder = self.scheduler.recorder if self.scheduler is not None else None
        if recorder is not None:
            recorder.close()

    def pytest_unconfigure(self) -> None:
        """Remove the rendezvous directory and close the links."""
        if self.rendezvous is not None:
            self.rendezvous.close()
            self.rendezvous = None

    def say(self, line: str) -> None:
        """One line on the terminal (the header, before the tests run)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
