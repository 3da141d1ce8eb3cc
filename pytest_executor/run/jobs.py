"""The plugin's engine job types: one :class:`TestJob` per collected test.

Every selected test of an active run is a job of one engine
(:mod:`pytest_executor.run.controller`), so ordering, conditions, retries,
limits and ``exclusive`` are the engine's:

* :class:`LocalTestJob` (``local``/``thread`` tests) is a
  :class:`~executor.engine.job.caller.CallerJob`: its body runs pytest's
  protocol for one attempt on the main thread, the one that drives the engine
  (``Engine.start(loop_thread=False)``), where a chain of such jobs runs back to
  back without a loop round trip;
* :class:`RemoteTestJob` (``process``/``subprocess``/``dask``...) hands an
  attempt to a runner (:mod:`pytest_executor.backends._runner`) and ends when
  the runner's ``result`` event for it arrives; its reports are replayed by the
  controller as the events come.

``after=`` becomes a condition on the upstream jobs having *finished* (done,
failed or cancelled), not on their success: a test whose dependency did not
pass still runs its body, which turns it into a skip naming the dependency.
The local tests run in lane order because pytest's fixture teardown needs to
know the next item in advance: the engine starts ready CallerJobs one at a
time in submission order, and where a local job could be passed by a later one
(a condition, a remote dependency, retries) every local job also waits for the
previous one to finish (see ``Controller._lane_needs_chain``).

A failed attempt that will be retried raises :class:`RetryAttempt` (the engine
retries it); a test that failed in the end raises :class:`TestFailed`, so its
job is ``failed``; other outcomes end the job ``done`` with the outcome
(``"passed"``, ``"skipped"``, ``"xfailed"``...) as its result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from executor.engine.job.caller import CallerJob
from executor.engine.job.condition import AfterAnother, AfterOthers, AllSatisfied, Condition
from executor.engine.job.utils import FINISHED_STATUSES

if TYPE_CHECKING:
    from executor.engine.core import Engine
    from pytest_executor.views.report import JobRecord

FINISHED = FINISHED_STATUSES


class RetryAttempt(Exception):
    """This attempt failed and the test has retries left: the engine runs it again."""


class TestFailed(Exception):
    """The test failed (or errored) in its last attempt; the message is pytest's first line."""

    __test__ = False  # not a test class, whatever pytest thinks of the name


class TestJob(CallerJob):
    """The engine job of one collected test: its node id, record and reports are reachable from it."""

    __test__ = False

    def __init__(self, func: Callable[..., Any], item: pytest.Item, node: int, record: JobRecord,
                 **options: Any) -> None:
        super().__init__(func, args=(self,), name=item.nodeid, **options)
        self.item = item
        """The collected ``pytest.Item``."""
        self.nodeid: str = item.nodeid
        """The test's node id."""
        self.node = node
        """Index of the item in the run's plan."""
        self.record = record
        """The row of the job table and JSON report (outcome, worker, timings, attempts)."""
        self.reports: list[list[pytest.TestReport]] = []
        """Reports of each attempt that ran, in order (replayed or logged ones)."""

    def prepare(self, engine: Any) -> None:
        """Nothing to check: a test job's function is the plugin's own, never a generator function.

        (CallerJob's check inspects the function's code flags, once per test: 20,000 tests paid
        for it before the first could start.)
        """

    @property
    def backend(self) -> str:
        """The backend that runs the test (``local``, ``thread``, ``process``...)."""
        return self.record.backend

    @property
    def outcome(self) -> str:
        """The test's outcome: ``passed``, ``failed``, ``error``, ``skipped``, ``xfailed``,
        ``xpassed``, or ``created``/``pending``/``running``/``cancelled`` while it has none."""
        return self.record.status

    @property
    def worker(self) -> str:
        """Where the last attempt ran (``main``, ``main/thread``, a worker id)."""
        return self.record.worker


class LocalTestJob(TestJob):
    """A ``local``/``thread`` test: its body runs one attempt of pytest's protocol on the main thread."""


class RemoteTestJob(TestJob):
    """A test for a runner: an attempt is handed to the runner and ends with its ``result`` event."""

    resource_kind = "runner"

    def __init__(self, attempt: Callable[[RemoteTestJob], Awaitable[Any]], item: pytest.Item, node: int,
                 record: JobRecord, **options: Any) -> None:
        super().__init__(_never, item, node, record, **options)
        self._attempt = attempt

    # Required parameters on purpose: that is how the engine tells its own calling convention from upstream's.
    async def run_function(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Any:  # type: ignore[override]
        """Run one attempt through the controller's runner lane (see :mod:`pytest_executor.run._remote`).

        The engine's own signature (no defaults): the engine then calls it directly, not through
        upstream's hooks (``process_func``, ``resolve_args``, ``run``), which cost each test's
        attempt several steps for nothing a test job uses.
        """
        return await self._attempt(self)


def _never(_job: TestJob) -> None:
    """Placeholder body of a remote job (its attempts go through ``run_function``)."""
    raise AssertionError("a remote test job has no local body")


class GuardedCondition(Condition):
    """A user's ``condition=`` that cannot fail its job: an error makes it hold and is remembered.

    The test then runs its body, which turns it into a skip naming the problem
    (as a dependency that did not pass does).
    """

    def __init__(self, inner: Condition) -> None:
        self.inner = inner
        self.error: BaseException | None = None

    def satisfy(self, engine: Engine) -> bool:
        """The inner condition's answer; True (and :attr:`error` set) if it raised."""
        if self.error is not None:
            return True
        try:
            return bool(self.inner.satisfy(engine))
        except Exception as error:  # reported as the test's skip reason
            self.error = error
            return True

    def waits_for(self) -> frozenset[str]:
        """Jobs whose status changes may change the inner condition."""
        return self.inner.waits_for()

    def next_change(self, now: float) -> float | None:
        """When the inner condition may change by time alone."""
        return self.inner.next_change(now)

    def needs_polling(self) -> bool:
        """Whether the inner condition must be re-checked periodically."""
        return self.inner.needs_polling()

    def __repr__(self) -> str:
        return repr(self.inner)


def job_condition(
    after: Sequence[TestJob], previous_local: TestJob | None, user: GuardedCondition | None
) -> Condition | None:
    """The engine condition of a test job: its dependencies, the local chain and the user's condition."""
    parts: list[Condition] = []
    if after:
        parts.append(AfterOthers(job_ids=[job.id for job in after], statuses=FINISHED))
    if previous_local is not None:
        parts.append(AfterAnother(job_id=previous_local.id, statuses=FINISHED))
    if user is not None:
        parts.append(user)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else AllSatisfied(conditions=parts)
