"""The remote lane: test jobs on runners, and the main-thread pump that replays their events.

A :class:`~pytest_executor.run.jobs.RemoteTestJob` attempt is a coroutine on
the engine's loop (which runs on the main thread, see
:mod:`executor.engine._driving`): it waits for a free slot of its runner,
submits an :class:`~pytest_executor.backends._runner.ItemTask` and awaits the
item's ``result`` event.  Runners are not thread-safe and deliver events when
asked (``next_events``), so the controller's main loop alternates: run what
the engine has ready (``serve_caller(timeout=0)``), then block on the runners
for events and replay them here through pytest's hooks, which resolves the
attempts they end.

Retries are the engine's: a failed result with retries left ends the attempt
with :class:`~pytest_executor.run.jobs.RetryAttempt`.  Its reports are held
back (only the final attempt's reach the terminal and junitxml).  A runner that
defers teardown (``Runner.defers_teardown``) gets the retry on the same worker
before the failed attempt's ``done``: the worker tears that attempt down only
once it knows its next task.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import CallInfo

from pytest_executor.backends._runner import ItemTask, Runner
from pytest_executor.run.jobs import RemoteTestJob, RetryAttempt, TestFailed
from pytest_executor.run.local import outcome_of
from pytest_executor.views.report import AttemptRecord

if TYPE_CHECKING:
    from pytest_executor.run.controller import Controller

MAIN_WORKER = "main"
FAILING = ("failed", "error")


@dataclass
class _Remote:
    """Book-keeping of one item handed to a runner."""

    attempt: int = 1
    held: list[pytest.TestReport] = field(default_factory=list)
    """Reports of an attempt that may still be retried, not replayed yet."""
    holding: bool = False
    retrying: bool = False
    retry_worker: str | None = None
    """The worker that holds the failed attempt's teardown until it gets the retry."""
    retry_submitted: bool = False
    """The next attempt was handed to the runner already (see ``Runner.defers_teardown``)."""
    closed: bool = False
    """The failed attempt's ``done`` came before its retry was submitted (its worker crashed)."""
    result_seen: bool = False
    logstart_sent: bool = False
    location: tuple[str, int | None, str] | None = None
    """The item's location as its logstart event gave it (the worker's: the controller need not work it out)."""
    ended: asyncio.Future[str] | None = None
    """Resolved with the attempt's outcome (or ``"retry"``) when the job's attempt ends."""


class RemoteLane:
    """Runs the remote test jobs of one session on their runners."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.runners: dict[str, Runner] = {}
        self.remote: dict[int, _Remote] = {}
        self.waiting_for_slot: dict[str, collections.deque[tuple[RemoteTestJob, asyncio.Future[None]]]] = {}
        self.main_work: collections.deque[tuple[RemoteTestJob, str, asyncio.Future[None]]] = collections.deque()
        """Remote tests to skip: their skip reports are made on the main thread outside the loop."""

    # ----------------------------------------------------------- attempts
    async def attempt(self, job: RemoteTestJob) -> str:
        """One attempt of ``job`` (its ``run_function``): the outcome, or raise to retry / fail the job."""
        ctl = self.controller
        node = job.node
        runner = self.runners[job.record.backend]
        if job.attempts == 1:
            reason = ctl.blocked_by(node)
            if reason is not None:
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.main_work.append((job, reason, done))
                await done
                return "skipped"
        state = self.remote.setdefault(node, _Remote())
        state.ended = asyncio.get_running_loop().create_future()
        if job.attempts > 1 and state.retry_worker is not None:
            # The worker finishes the failed attempt (its teardown, then "done") only once it
            # knows its next task: this retry, on the same worker.  Its events come after the
            # failed attempt's on the same channel; "done" begins the new attempt's book-keeping.
            worker, state.retry_worker = state.retry_worker, None
            if state.closed:
                self._begin_attempt(node, job.attempts)
            else:
                state.retry_submitted = True
            runner.submit(self._task(node, job.attempts, worker=worker))
        else:
            if runner.free_slots() <= 0:
                slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.waiting_for_slot.setdefault(runner.name, collections.deque()).append((job, slot))
                await slot
            self._begin_attempt(node, job.attempts)
            runner.submit(self._task(node, job.attempts))
        outcome = await state.ended
        if outcome == "retry":
            raise RetryAttempt(f"{job.nodeid}: attempt {job.attempts} failed")
        if outcome in FAILING:
            ctl.no_retry_left(job)
            raise TestFailed(f"{job.nodeid} {outcome}")
        return outcome

    def grant_slots(self) -> None:
        """Hand free runner slots to attempts waiting for one, oldest first."""
        for name, waiting in self.waiting_for_slot.items():
            runner = self.runners[name]
            free = runner.free_slots() if waiting else 0
            while waiting and free > 0:
                job, slot = waiting.popleft()
                if not slot.done() and job.status == "running":
                    slot.set_result(None)
                    free -= 1

    def skip_blocked(self) -> bool:
        """Make the skip reports of remote tests whose dependency did not pass; whether there were any."""
        if not self.main_work:
            return False
        while self.main_work:
            job, reason, done = self.main_work.popleft()
            self.skip(job.node, reason)
            if not done.done():
                done.set_result(None)
        return True

    def _begin_attempt(self, node: int, attempt: int) -> None:
        """Reset the book-keeping of ``node`` for its ``attempt``-th run."""
        state = self.remote.setdefault(node, _Remote())
        state.attempt = attempt
        state.holding = attempt <= self.controller.plan.specs[node].retries
        state.retrying = False
        state.retry_submitted = False
        state.closed = False
        state.result_seen = False

    def _task(self, node: int, attempt: int, worker: str | None = None) -> ItemTask:
        ctl = self.controller
        spec = ctl.plan.specs[node]
        return ItemTask(index=node, nodeid=ctl.plan.items[node].nodeid, timeout=ctl.timeouts[node],
                        exclusive=spec.exclusive, attempt=attempt, worker=worker)

    def skip(self, node: int, reason: str) -> None:
        """Give a remote item real skip reports without running it anywhere."""
        ctl = self.controller
        item = ctl.plan.items[node]
        ctl.records[node].worker = MAIN_WORKER

        def skip() -> None:
            raise pytest.skip.Exception(reason, _use_item_location=True)

        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = []
        for when, func in (("setup", skip), ("teardown", lambda: None)):
            call = CallInfo.from_call(func, when=when)  # type: ignore[arg-type]
            report = ihook.pytest_runtest_makereport(item=item, call=call)
            ihook.pytest_runtest_logreport(report=report)
            reports.append(report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        ctl.collected.pop(node, None)
        ctl.records[node].stop = time.time()
        ctl.finalize(node, reports, MAIN_WORKER)

    # -------------------------------------------------------------- events
    def handle(self, session: pytest.Session, runner: Runner, name: str, data: dict[str, Any]) -> None:
        """Replay one runner event (see :mod:`pytest_executor.backends._runner`)."""
        ctl = self.controller
        if name == "logstart":
            node = ctl.node_of[data["nodeid"]]
            state = self.remote.setdefault(node, _Remote())
            ctl.records[node].worker = data.get("worker", "")
            if not state.logstart_sent:
                state.logstart_sent = True
                item = ctl.plan.items[node]
                state.location = data.get("location") or item.location
                item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=state.location)
        elif name == "logreport":
            report: pytest.TestReport = data["report"]
            node = ctl.node_of[report.nodeid]
            state = self.remote.setdefault(node, _Remote())
            if state.holding or state.retrying:
                state.held.append(report)
            else:
                ctl.plan.items[node].ihook.pytest_runtest_logreport(report=report)
        elif name == "result":
            self._on_result(session, data["index"], data["outcome"], runner, data.get("worker"))
        elif name == "done":
            self._on_done(session, runner, data)
        elif name == "warning":
            ctl.config.hook.pytest_warning_recorded.call_historic(kwargs=data)
        elif name == "exit":  # pytest.exit() in a test: the run ends as in a serial one
            raise pytest.exit.Exception(data["message"], data["returncode"])
        elif name == "interrupt":  # a test raised KeyboardInterrupt: the run stops as on Ctrl-C
            raise KeyboardInterrupt
        elif name == "worker_lost":
            ctl.say(f"executor: worker {data.get('worker')} lost: {data.get('reason')}")
        elif name == "error":
            raise pytest.UsageError(f"executor backend {runner.name!r}: {data.get('message')}")

    def _on_result(
        self, session: pytest.Session, node: int, outcome: str, runner: Runner, worker: str | None = None
    ) -> None:
        ctl = self.controller
        state = self.remote.setdefault(node, _Remote())
        state.result_seen = True
        spec = ctl.plan.specs[node]
        stopping = session.shouldfail or session.shouldstop
        if outcome == "failed" and state.attempt <= spec.retries and not stopping:
            state.retrying = True
            if runner.defers_teardown and worker:
                state.retry_worker = worker
                _resolve(state.ended, "retry")
            return  # else the retry starts once this attempt is "done"
        item = ctl.plan.items[node]
        state.holding = False
        for report in state.held:
            item.ihook.pytest_runtest_logreport(report=report)
        state.held.clear()
        # The replayed reports tell an xfail from a skip and a setup error from a
        # failure, so dependents get the skip reason of the pytest process.
        replayed = ctl.collected.get(node)
        if replayed:
            final = outcome_of(replayed)[0]
        else:
            final = {"passed": "passed", "skipped": "skipped"}.get(outcome, "failed")
        ctl.outcome_known(node, final)
        _resolve(state.ended, final)

    def _on_done(self, session: pytest.Session, runner: Runner, data: dict[str, Any]) -> None:
        ctl = self.controller
        node = data["index"]
        state = self.remote.setdefault(node, _Remote())
        record = ctl.records[node]
        if state.retrying:
            status, message = outcome_of(state.held)
            duration = sum(report.duration for report in state.held)
            record.attempts.append(AttemptRecord(state.attempt, status, duration, data.get("worker", ""), message))
            ctl.jobs[node].reports.append(list(state.held))
            state.held.clear()
            if state.retry_submitted:
                self._begin_attempt(node, state.attempt + 1)
            else:
                state.closed = True
                _resolve(state.ended, "retry")  # the engine's retry submits the next attempt
            return
        if not state.result_seen:  # defensive: a runner that skipped "result"
            self._on_result(session, node, "failed", runner)
        item = ctl.plan.items[node]
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=state.location or item.location)
        record.start = data.get("start", record.start)
        record.stop = data.get("stop", time.time())
        if record.ready is not None and record.start is not None:
            record.wait = max(0.0, record.start - record.ready)
        ctl.finalize(node, ctl.collected.pop(node, []), data.get("worker", record.worker))

    def finalize_decided(self) -> None:
        """The run stops (``-x``, ``--maxfail``): record the tests whose outcome is known but not their end.

        A worker reports a test's teardown, and so its end, only once it has its next test; the run
        stops before that, so without this the test that stopped it would be recorded as cancelled.
        """
        ctl = self.controller
        for node, state in self.remote.items():
            record = ctl.records[node]
            if state.result_seen and not state.retrying and record.status == "running":
                record.stop = time.time()
                ctl.finalize(node, ctl.collected.pop(node, []), record.worker)

    def kill(self) -> None:
        """Abort every runner now (Ctrl-C, ``-x``)."""
        runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            runner.kill()


def _resolve(future: asyncio.Future[str] | None, value: str) -> None:
    if future is not None and not future.done():
        future.set_result(value)
