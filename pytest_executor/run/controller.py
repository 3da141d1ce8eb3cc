"""The run loop of an active plugin: every test an engine job, in dependency order, on its backend.

A :class:`Controller` is registered as a pytest plugin object after collection
when the plugin is active (never in worker sessions).  It replaces
``pytest_runtestloop``: each planned item becomes a job of one
:class:`~executor.engine.Engine` (see :mod:`pytest_executor.run.jobs`), and
the engine decides what may start — ``after=`` dependencies, ``condition=``,
``retries``, ``--executor-max-jobs`` and ``exclusive`` are its conditions,
retries, limits and exclusive scheduling:

* ``local``/``thread`` items are CallerJobs run on the main thread, one at a
  time in topological order, through ``pytest_runtest_protocol`` with the lane's
  next item as ``nextitem`` — so fixtures are set up and torn down as in plain
  pytest.  The engine runs without a loop thread (``start(loop_thread=False)``):
  its loop runs on the main thread while the controller waits in it, and a
  chain of in-process tests costs no thread switch;
* ``process``/``subprocess``/``dask`` items are jobs whose attempts go to a
  runner (:mod:`pytest_executor.backends._runner` contract); the controller
  alternates between the engine and the runners' events, which it replays
  through pytest's logging hooks (:mod:`pytest_executor.run._remote`);
* a test whose dependency did not pass runs no test code: it gets real skip
  reports naming the dependency.
"""

from __future__ import annotations

import collections
import time
from typing import Any, final

import pytest

from executor.engine.core import Engine, EngineSetting
from executor.engine.job.utils import ACTIVE_STATUSES
from pytest_executor.backends._runner import Runner
from pytest_executor.compat import order_only
from pytest_executor.config.options import IN_PROCESS_BACKENDS
from pytest_executor.plan._planner import Plan
from pytest_executor.run.jobs import (
    FINISHED, GuardedCondition, LocalTestJob, RemoteTestJob, RetryAttempt, TestFailed, TestJob, job_condition,
)
from pytest_executor.run._gc import collector_paused, skip_collection_at_exit
from pytest_executor.run._remote import MAIN_WORKER, RemoteLane
from pytest_executor.run.local import outcome_of, run_attempt
from pytest_executor.views.report import OK_STATUSES, RUN_KEY, AttemptRecord, JobRecord, RunRecord

THREAD_WORKER = "main/thread"
SUBMIT_BATCH = 256
"""Jobs submitted to the engine at a time while runners already run the first ones (see ``_loop``)."""


@final
class Controller:
    """Plugin object owning the run loop of one session."""

    def __init__(self, config: pytest.Config, plan: Plan, settings: dict[str, Any]) -> None:
        self.config = config
        self.plan = plan
        self.settings = settings
        self.run = RunRecord()
        config.stash[RUN_KEY] = self.run
        self.node_of = {item.nodeid: node for node, item in enumerate(plan.items)}
        default_timeout = settings.get("timeout")
        self.timeouts = [spec.timeout or default_timeout for spec in plan.specs]
        self.records: list[JobRecord] = []
        for node, item in enumerate(plan.items):
            spec = plan.specs[node]
            record = JobRecord(
                test=item.nodeid,
                backend=plan.backends[node],
                after=[plan.items[d].nodeid for d in plan.deps.get(node, ())]
                + plan.missing.get(node, []),
                retries=spec.retries,
                timeout=self.timeouts[node],
                exclusive=spec.exclusive,
            )
            self.records.append(record)
        for node in plan.order:
            self.run.jobs[plan.items[node].nodeid] = self.records[node]
        self.lane = [n for n in plan.order if plan.backends[n] in IN_PROCESS_BACKENDS]
        self.next_in_lane = dict(zip(self.lane, self.lane[1:]))
        self.dependents: dict[int, list[int]] = {}
        for node, deps in plan.deps.items():
            for dep in deps:
                self.dependents.setdefault(dep, []).append(node)
        self.outcomes: dict[int, str] = {}
        self.collected: dict[int, list[pytest.TestReport]] = {}
        self.special: tuple[int, int] | None = None
        """(node, attempt) of the in-process item whose protocol this plugin runs itself."""
        self.special_result: tuple[list[pytest.TestReport], bool] | None = None
        self.conditions: dict[int, GuardedCondition] = {}
        self.jobs: list[TestJob] = []
        self.remote = RemoteLane(self)
        self.engine: Engine | None = None
        self.unannounced: dict[int, pytest.TestReport | None] = {}
        """Finalized tests whose engine job had not finished yet: ``pytest_executor_job_finished`` waits."""
        self.abort: BaseException | None = None
        """An exception from a test's body that ends the run (``pytest.exit``, an internal error)."""

    # ------------------------------------------------------------------ hooks

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        """Run every planned item; replaces pytest's sequential loop."""
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''}"
                " during collection"
            )
        if session.config.option.collectonly:
            return True
        try:
            self._loop(session)
        except BaseException:
            self.remote.kill()
            raise
        finally:
            self._close()
            if not self.lane:  # every test ran in a worker: nothing of theirs is finalised here at exit
                skip_collection_at_exit()
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Run one attempt of items that need retries, a thread or a timeout; others go to pytest."""
        if self.special is None or self.plan.items[self.special[0]] is not item:
            return None
        node, attempt = self.special
        spec = self.plan.specs[node]
        on_thread = self.plan.backends[node] == "thread" or self.timeouts[node] is not None
        if attempt == 1:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports, again = run_attempt(
            item, nextitem, may_retry=attempt <= spec.retries, timeout=self.timeouts[node], on_thread=on_thread
        )
        self.special_result = (reports, again)
        if not again:
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the reports of each job for its record."""
        node = self.node_of.get(report.nodeid)
        if node is not None:
            self.collected.setdefault(node, []).append(report)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        """Note when a job starts."""
        node = self.node_of.get(nodeid)
        if node is not None:
            record = self.records[node]
            record.start = time.time()
            record.status = "running"
            if record.ready is not None:
                record.wait = max(0.0, record.start - record.ready)

    # ------------------------------------------------------------- main loop

    def _loop(self, session: pytest.Session) -> None:
        hook = self.config.hook
        self.run.started = time.time()
        with collector_paused():  # jobs and records live as long as the run (see run._gc)
            self._make_jobs()
        for node in self.plan.order:
            hook.pytest_executor_job_created(item=self.plan.items[node], job=self.jobs[node])
        self._release([n for n in self.plan.order if not self.plan.deps.get(n)])
        for backend in dict.fromkeys(self.plan.backends):
            if backend not in IN_PROCESS_BACKENDS:
                self._runner(backend, session)
        # The engine prints nothing (print_traceback=False: failures are logged at TRACE only).
        engine = Engine(EngineSetting(max_jobs=self.settings.get("max-jobs"), print_traceback=False))
        engine.start(loop_thread=False)
        self.engine = engine
        engine.add_listener(self._on_status)
        runners = self.remote.runners
        jobs = [self.jobs[node] for node in self.plan.order]
        # With runners, the jobs go to the engine a batch at a time, between turns of the run loop: the
        # first tests start while the others are submitted (each job costs the engine some work to
        # submit and start; 20,000 of them took about a second before the first test could run).
        size = SUBMIT_BATCH if runners else max(1, len(jobs))
        unsubmitted = collections.deque(jobs[at:at + size] for at in range(0, len(jobs), size))
        self._submit_batch(unsubmitted)
        if not runners:
            engine.serve_caller()
            self._check_stop(session)
        else:
            # One runner: block on it (events wake us at once); several, or time
            # conditions the engine must see on time: take turns.
            wait = 1.0 if len(runners) == 1 and not self.conditions else 0.05
            while True:
                engine.serve_caller(timeout=0)
                self._announce()
                self._check_stop(session)
                if self.remote.skip_blocked():
                    continue
                if not engine.jobs.active_count and not unsubmitted:
                    break
                for runner in list(runners.values()):
                    for name, data in runner.next_events(0.0 if unsubmitted else wait):
                        self.remote.handle(session, runner, name, data)
                    self._check_stop(session)
                self.remote.grant_slots()
                self._submit_batch(unsubmitted)
        for runner in runners.values():
            runner.finish()
        for runner in list(runners.values()):
            self._drain(session, runner)

    def _submit_batch(self, unsubmitted: collections.deque[list[TestJob]]) -> None:
        """Submit the next batch of ``unsubmitted`` jobs, if any, to the engine."""
        if unsubmitted:
            assert self.engine is not None
            with collector_paused():  # a task per job, alive until the job ends
                self.engine.submit(*unsubmitted.popleft())

    def _make_jobs(self) -> None:
        """One engine job per planned item, conditioned on its dependencies (and the local chain)."""
        plan = self.plan
        jobs: list[TestJob | None] = [None] * len(plan.items)
        previous_local: TestJob | None = None
        chained = self._lane_needs_chain()
        for node in plan.order:
            spec = plan.specs[node]
            user = None
            if spec.condition is not None:
                user = self.conditions[node] = GuardedCondition(spec.condition)
            after = [dep for dep in (jobs[d] for d in plan.deps.get(node, ())) if dep is not None]
            local = plan.backends[node] in IN_PROCESS_BACKENDS
            condition = job_condition(after, previous_local if local and chained else None, user)
            options: dict[str, Any] = dict(retries=spec.retries, exclusive=spec.exclusive, condition=condition)
            job: TestJob
            if local:
                job = previous_local = LocalTestJob(self._run_local, plan.items[node], node, self.records[node],
                                                    **options)
            else:
                job = RemoteTestJob(self.remote.attempt, plan.items[node], node, self.records[node], **options)
            jobs[node] = job
        self.jobs = [job for job in jobs if job is not None]
        assert len(self.jobs) == len(plan.items), "the plan orders every item"

    def _lane_needs_chain(self) -> bool:
        """Whether the local jobs must each wait for the previous one (see :mod:`pytest_executor.run.jobs`).

        The engine starts ready CallerJobs one at a time in submission order,
        i.e. in lane order, and a local job whose dependencies are all earlier
        local jobs is ready when its turn comes.  Only a job that may not be
        startable at its turn — it has a condition, a dependency on a remote
        test, or retries (a retried attempt queues again behind later jobs) —
        could let a later one pass it.  A plain suite then needs no chain,
        whose conditions cost the scheduler some work per test.
        """
        plan = self.plan
        for node in self.lane:
            spec = plan.specs[node]
            if spec.retries or spec.condition is not None:
                return True
            if any(plan.backends[dep] not in IN_PROCESS_BACKENDS for dep in plan.deps.get(node, ())):
                return True
        return False

    def _on_status(self, job: Any, status: str) -> None:
        """Engine listener: a local test job ended (on the main thread, no loop running): announce it."""
        if status in ("done", "failed") and type(job) is LocalTestJob and job.node in self.unannounced:
            self._announce_one(job.node)

    def _announce(self, every: bool = False) -> None:
        """Call ``pytest_executor_job_finished`` for finalized tests whose job ended (``every``: all of them)."""
        for node in list(self.unannounced):
            if every or self.jobs[node].status in FINISHED:
                self._announce_one(node)

    def _announce_one(self, node: int) -> None:
        report = self.unannounced.pop(node)
        self.config.hook.pytest_executor_job_finished(item=self.plan.items[node], job=self.jobs[node], report=report)

    def outcome_known(self, node: int, outcome: str) -> None:
        """``node``'s outcome is known: its job ends now; note when its dependents became ready."""
        if node in self.outcomes:
            return
        self.outcomes[node] = outcome
        children = self.dependents.get(node)
        if children:
            outcomes = self.outcomes
            self._release([c for c in children if all(dep in outcomes for dep in self.plan.deps[c])])

    def _release(self, nodes: list[int]) -> None:
        """Dependencies of ``nodes`` are done: they wait only for a slot (or condition) now."""
        now = time.time()
        for node in nodes:
            record = self.records[node]
            record.ready = now
            record.status = "pending"

    def blocked_by(self, node: int) -> str | None:
        """Skip reason if a dependency did not pass (or the condition failed), else None."""
        guarded = self.conditions.get(node)
        gate = {}
        if guarded is not None and guarded.error is not None:
            gate[node] = f"could not be evaluated ({guarded.error!r})"
        return blocked_reason(self.plan, node, self.outcomes, gate)

    def no_retry_left(self, job: TestJob) -> None:
        """A failed final attempt must end the job (the run may be stopping with retries left)."""
        job.retries = min(job.retries, job.attempts - 1)

    def _check_stop(self, session: pytest.Session) -> None:
        """Honour ``-x``/``--maxfail``, other stop requests, and errors out of a test's body."""
        if self.abort is not None:
            self.remote.kill()
            raise self.abort
        if not (session.shouldfail or session.shouldstop):
            return
        self.remote.finalize_decided()
        self._stop_jobs()
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        raise session.Interrupted(session.shouldstop)

    def _stop_jobs(self, but: TestJob | None = None) -> None:
        """Kill the runners and cancel every job still pending or running (but ``but``)."""
        self.remote.kill()
        engine = self.engine
        if engine is not None:
            active = [job for job in self.jobs if job is not but and job.status in ACTIVE_STATUSES]
            if active:
                engine.cancel(*active)

    def _close(self) -> None:
        """Mark jobs that never finished as cancelled; stop the engine."""
        self._announce(every=True)
        for node, record in enumerate(self.records):
            if record.status in ("created", "pending", "running"):
                record.status = "cancelled"
                job = self.jobs[node] if self.jobs else None
                self.config.hook.pytest_executor_job_finished(item=self.plan.items[node], job=job, report=None)
        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.stop()

    # ------------------------------------------------------------ local lane

    def _run_local(self, job: LocalTestJob) -> str:
        """Body of a local test job: one attempt of the item's protocol on the main thread."""
        try:
            return self._local_attempt(job)
        except (RetryAttempt, TestFailed):
            raise
        except Exception as error:  # pytest.exit(), an internal error: the run ends with it
            self.abort = error
            self._stop_jobs(but=job)
            return "cancelled"

    def _local_attempt(self, job: LocalTestJob) -> str:
        node = job.node
        item = self.plan.items[node]
        nextnode = self.next_in_lane.get(node)
        nextitem = self.plan.items[nextnode] if nextnode is not None else None
        record = self.records[node]
        spec = self.plan.specs[node]
        attempt = job.attempts
        reason = self.blocked_by(node) if attempt == 1 else None
        on_thread = self.plan.backends[node] == "thread" or self.timeouts[node] is not None
        if attempt == 1:
            record.worker = THREAD_WORKER if on_thread and reason is None else MAIN_WORKER
            self.collected.pop(node, None)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
        special = reason is None and (spec.retries > 0 or on_thread)
        self.special = (node, attempt) if special else None
        self.special_result = None
        try:
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            self.special = None
        if self.special_result is not None:
            reports, again = self.special_result
            self.collected.pop(node, None)
        else:
            reports, again = self.collected.pop(node, []), False
        self.special_result = None
        session = item.session
        if again:
            job.reports.append(reports)
            status, message = outcome_of(reports)
            record.attempts.append(
                AttemptRecord(attempt, status, sum(r.duration for r in reports), record.worker, message)
            )
            raise RetryAttempt(f"{item.nodeid}: attempt {attempt} failed")
        record.stop = time.time()
        self.finalize(node, reports, record.worker)
        if session.shouldfail or session.shouldstop:
            self._stop_jobs(but=job)
        if record.status in ("failed", "error"):
            self.no_retry_left(job)
            raise TestFailed(f"{item.nodeid} {record.status}: {record.message}")
        return record.status

    def finalize(self, node: int, reports: list[pytest.TestReport], worker: str) -> None:
        """Fill the record from the final attempt's reports; tell the hooks."""
        record = self.records[node]
        job = self.jobs[node]
        job.reports.append(reports)
        status, message = outcome_of(reports)
        duration = sum(report.duration for report in reports)
        record.attempts.append(AttemptRecord(len(record.attempts) + 1, status, duration, worker, message))
        record.status, record.message, record.duration = status, message, duration
        self.outcome_known(node, record.status)
        telling = next((r for r in reports if r.failed), None) or next(
            (r for r in reports if r.when == "call"), reports[0] if reports else None
        )
        # Announced once the engine ended the job too (job.status final): for a local test
        # when its body returned, for a remote one when the engine took its result.
        self.unannounced[node] = telling
        if job.status in FINISHED:
            self._announce_one(node)

    # ---------------------------------------------------------------- remote

    def _runner(self, backend: str, session: pytest.Session) -> Runner:
        runner = self.remote.runners.get(backend)
        if runner is None:
            try:
                from pytest_executor.backends._factory import make_runner
            except ImportError as error:
                raise pytest.UsageError(
                    f"--executor-backend / job(backend=...): backend {backend!r} is not "
                    f"available yet ({error})"
                ) from None
            runner = make_runner(backend, self.config)
            self.remote.runners[backend] = runner
            runner.start(session)
        return runner

    def _drain(self, session: pytest.Session, runner: Runner) -> None:
        while True:
            events = runner.next_events(1.0)
            for name, data in events:
                if name == "finished":
                    return
                self.remote.handle(session, runner, name, data)
            self._check_stop(session)

    def say(self, line: str) -> None:
        """Write a line to the terminal (a worker was lost, ...)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)


_VERBS = {
    "failed": "failed", "error": "errored", "skipped": "was skipped",
    "xfailed": "xfailed", "cancelled": "did not run",
}


def blocked_reason(
    plan: Plan, node: int, outcomes: dict[int, str], gates_failed: dict[int, str] | None = None
) -> str | None:
    """The skip reason of ``node`` if a dependency did not pass (or its gate failed), else None.

    Shared by the controller and the xdist worker so both word it identically.
    """
    if gates_failed and node in gates_failed:
        return f"its condition {plan.specs[node].condition!r} {gates_failed[node]}"
    if node not in plan.deps and node not in plan.missing:
        return None  # most tests: nothing to look up
    reasons = []
    soft = order_only(plan.items[node])  # pytest-order edges wait, never skip
    for dep in plan.deps.get(node, ()):
        outcome = outcomes.get(dep, "cancelled")
        if outcome not in OK_STATUSES and plan.items[dep].nodeid not in soft:
            reasons.append(f"{plan.items[dep].nodeid} {_VERBS.get(outcome, outcome)}")
    missing = [nodeid for nodeid in plan.missing.get(node, ()) if nodeid not in soft]
    reasons.extend(f"{nodeid} was not selected" for nodeid in missing)
    if not reasons:
        return None
    hint = f" (use --executor-with-deps to run {'it' if len(missing) == 1 else 'them'})" if missing else ""
    return "dependency " + "; ".join(reasons) + hint
