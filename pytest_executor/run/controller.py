"""The run loop of an active plugin: items as jobs, in dependency order, on their backends.

A :class:`Controller` is registered as a pytest plugin object after collection
when the plugin is active (never in worker sessions).  It replaces
``pytest_runtestloop``:

* ``local``/``thread`` items form one *lane* that runs in the main thread, one
  at a time, in topological order, through ``pytest_runtest_protocol`` with the
  lane's next item as ``nextitem`` — so fixtures are set up and torn down as in
  plain pytest;
* ``process``/``subprocess``/``dask`` items go to a runner
  (:mod:`pytest_executor.backends._runner` contract) as soon as they are ready and a
  slot is free; its events are replayed through pytest's logging hooks;
* a test whose dependency did not pass is not run: it gets real skip reports
  naming the dependency;
* ``condition=`` is evaluated by an ``executor.engine`` Engine: a gate job with
  that condition is submitted when the item's dependencies are done, and the
  item starts once the gate job has run.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any, final

import pytest
from _pytest.runner import CallInfo

from executor.engine.job.utils import FINISHED_STATUSES
from pytest_executor.plan._planner import Plan
from pytest_executor.backends._runner import ItemTask, Runner
from pytest_executor.compat import order_only
from pytest_executor.run.local import outcome_of, run_attempts
from pytest_executor.config.options import IN_PROCESS_BACKENDS
from pytest_executor.views.report import OK_STATUSES, RUN_KEY, AttemptRecord, JobRecord, RunRecord
from pytest_executor.plan.scheduler import ReadyQueue

MAIN_WORKER = "main"
THREAD_WORKER = "main/thread"


@dataclass
class _Remote:
    """Book-keeping of one item handed to a runner."""

    attempt: int = 1
    held: list[pytest.TestReport] = field(default_factory=list)
    """Reports of an attempt that may still be retried, not replayed yet."""
    holding: bool = False
    retrying: bool = False
    retry_submitted: bool = False
    """The next attempt was handed to the runner already (see ``Runner.defers_teardown``)."""
    result_seen: bool = False
    logstart_sent: bool = False


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
        self.lane_position = 0
        self.remote_left = sum(1 for b in plan.backends if b not in IN_PROCESS_BACKENDS)
        """Remote items not handed out (or skipped) yet."""
        self.queue = ReadyQueue(
            plan.order,
            plan.deps,
            exclusive={n for n, spec in enumerate(plan.specs) if spec.exclusive},
            max_running=settings.get("max-jobs"),
        )
        self.outcomes: dict[int, str] = {}
        self.collected: dict[int, list[pytest.TestReport]] = {}
        self.special_attempts: list[list[pytest.TestReport]] | None = None
        self.special_node: int | None = None
        self.skipping: set[int] = set()
        self.runners: dict[str, Runner] = {}
        self.remote: dict[int, _Remote] = {}
        self.gates: dict[int, Any] = {}
        self.gates_open: set[int] = set()
        self.gates_failed: dict[int, str] = {}
        self.wakeups: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.engine: Any = None

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
            self._kill_runners()
            raise
        finally:
            self._close()
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """Run items that need retries, a thread or a timeout; others go to pytest."""
        node = self.special_node
        if node is None or self.plan.items[node] is not item:
            return None
        spec = self.plan.specs[node]
        on_thread = self.plan.backends[node] == "thread" or self.timeouts[node] is not None
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        self.special_attempts = run_attempts(
            item, nextitem, retries=spec.retries, timeout=self.timeouts[node], on_thread=on_thread
        )
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
        for node in self.plan.order:
            hook.pytest_executor_job_created(item=self.plan.items[node], job=self.records[node])
        self._release([n for n in self.plan.order if not self.plan.deps.get(n)])
        for backend in dict.fromkeys(self.plan.backends):
            if backend not in IN_PROCESS_BACKENDS:
                self._runner(backend, session)
        while not self.queue.is_done:
            progressed = self._dispatch(session)
            self._check_stop(session)
            if self.queue.is_done:
                break
            self._collect_events(session, block=not progressed)
            self._check_stop(session)
        for runner in self.runners.values():
            runner.finish()
        for backend, runner in self.runners.items():
            self._drain(session, runner)

    def _dispatch(self, session: pytest.Session) -> bool:
        """Start what may start now; return True if anything happened."""
        progressed = False
        if self.remote_left:
            progressed = self._dispatch_remote()
        if self.lane_position < len(self.lane):
            head = self.lane[self.lane_position]
            if self.queue.can_start(head):
                reason = self._blocked_by(head)
                if reason is not None or self._condition_met(head):
                    self.queue.start(head)
                    self._run_local(head, reason)
                    self._release(self.queue.finish(head))
                    progressed = True
        return progressed

    def _dispatch_remote(self) -> bool:
        """Hand ready remote items to their runners (or skip them); True if any.

        Each runner is asked for its free slots once per call, and the ready
        items are walked only until those slots are used up: with thousands of
        ready items and a handful of slots, a full scan per event would cost
        more than running trivial tests.  An item to skip (a dependency did
        not pass) needs no slot; one behind a full runner is skipped on a later
        call, when an event freed a slot (or at once if nothing runs).
        """
        free = {backend: runner.free_slots() for backend, runner in self.runners.items()}
        budget = sum(free.values())
        picks: list[tuple[int, str | None]] = []
        for node in self.queue.iter_ready():
            if budget <= 0 and self.queue.running:
                break  # a running item's events will free a slot and call us again
            backend = self.plan.backends[node]
            if backend in IN_PROCESS_BACKENDS or not self.queue.can_start(node):
                continue
            reason = self._blocked_by(node)
            if reason is None:
                if not self._condition_met(node) or free.get(backend, 0) <= 0:
                    continue
                free[backend] -= 1
                budget -= 1
            picks.append((node, reason))
        for node, reason in picks:
            self.queue.start(node)
            self.remote_left -= 1
            if reason is None:
                self._submit(self.runners[self.plan.backends[node]], node, attempt=1)
            else:
                self._skip_remote(node, reason)
                self._release(self.queue.finish(node))
        return bool(picks)

    def _release(self, nodes: list[int]) -> None:
        """Dependencies of ``nodes`` are done: they wait only for a slot (or condition) now."""
        now = time.time()
        for node in nodes:
            record = self.records[node]
            record.ready = now
            record.status = "pending"

    def _blocked_by(self, node: int) -> str | None:
        """Skip reason if a dependency did not pass, else None."""
        return blocked_reason(self.plan, node, self.outcomes, self.gates_failed)

    def _check_stop(self, session: pytest.Session) -> None:
        """Honour ``-x``/``--maxfail`` and other stop requests."""
        if not (session.shouldfail or session.shouldstop):
            return
        self._kill_runners()
        self.queue.cancel_pending()
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        raise session.Interrupted(session.shouldstop)

    def _close(self) -> None:
        """Mark jobs that never finished as cancelled; stop the condition engine."""
        for node, record in enumerate(self.records):
            if record.status in ("created", "pending", "running"):
                record.status = "cancelled"
                self.config.hook.pytest_executor_job_finished(
                    item=self.plan.items[node], job=record, report=None
                )
        if self.engine is not None:
            engine, self.engine = self.engine, None
            try:
                engine.cancel_all()
            finally:
                engine.stop()

    # ------------------------------------------------------------ local lane

    def _run_local(self, node: int, skip_reason: str | None) -> None:
        """Run the lane's next item in the main thread (skipped if ``skip_reason``)."""
        item = self.plan.items[node]
        self.lane_position += 1
        nextitem = (
            self.plan.items[self.lane[self.lane_position]]
            if self.lane_position < len(self.lane)
            else None
        )
        record = self.records[node]
        spec = self.plan.specs[node]
        on_thread = self.plan.backends[node] == "thread" or self.timeouts[node] is not None
        record.worker = THREAD_WORKER if on_thread and skip_reason is None else MAIN_WORKER
        self.collected.pop(node, None)
        special = skip_reason is None and (spec.retries > 0 or on_thread)
        if skip_reason is not None:
            item.add_marker(pytest.mark.skip(reason=skip_reason))
        self.special_node = node if special else None
        self.special_attempts = None
        try:
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            self.special_node = None
        attempts = self.special_attempts or [self.collected.pop(node, [])]
        self.special_attempts = None
        record.stop = time.time()
        self._finalize(node, attempts, record.worker)

    def _finalize(self, node: int, attempts: list[list[pytest.TestReport]], worker: str) -> None:
        """Fill the record from the reports of every attempt; tell dependents and hooks."""
        record = self.records[node]
        for number, reports in enumerate(attempts, start=len(record.attempts) + 1):
            status, message = outcome_of(reports)
            duration = sum(report.duration for report in reports)
            record.attempts.append(AttemptRecord(number, status, duration, worker, message))
        final = record.attempts[-1] if record.attempts else None
        if final is None:
            record.status, record.message = "cancelled", ""
        else:
            record.status, record.message, record.duration = final.status, final.message, final.duration
        self.outcomes.setdefault(node, record.status)
        last = attempts[-1] if attempts else []
        telling = next((r for r in last if r.failed), None) or next(
            (r for r in last if r.when == "call"), last[0] if last else None
        )
        self.config.hook.pytest_executor_job_finished(
            item=self.plan.items[node], job=record, report=telling
        )

    # ---------------------------------------------------------------- remote

    def _runner(self, backend: str, session: pytest.Session) -> Runner:
        runner = self.runners.get(backend)
        if runner is None:
            try:
                from pytest_executor.backends._factory import make_runner
            except ImportError as error:
                raise pytest.UsageError(
                    f"--executor-backend / job(backend=...): backend {backend!r} is not "
                    f"available yet ({error})"
                ) from None
            runner = make_runner(backend, self.config)
            self.runners[backend] = runner
            runner.start(session)
        return runner

    def _submit(self, runner: Runner, node: int, attempt: int) -> None:
        self._begin_attempt(node, attempt)
        runner.submit(self._task(node, attempt))

    def _begin_attempt(self, node: int, attempt: int) -> None:
        """Reset the book-keeping of ``node`` for its ``attempt``-th run."""
        state = self.remote.setdefault(node, _Remote())
        state.attempt = attempt
        state.holding = attempt <= self.plan.specs[node].retries
        state.retrying = False
        state.retry_submitted = False
        state.result_seen = False

    def _task(self, node: int, attempt: int, worker: str | None = None) -> ItemTask:
        spec = self.plan.specs[node]
        return ItemTask(
            index=node,
            nodeid=self.plan.items[node].nodeid,
            timeout=self.timeouts[node],
            exclusive=spec.exclusive,
            attempt=attempt,
            worker=worker,
        )

    def _skip_remote(self, node: int, reason: str) -> None:
        """Give a remote item real skip reports without running it anywhere."""
        item = self.plan.items[node]
        self.records[node].worker = MAIN_WORKER

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
        self.collected.pop(node, None)
        self.records[node].stop = time.time()
        self._finalize(node, [reports], MAIN_WORKER)

    def _collect_events(self, session: pytest.Session, block: bool) -> None:
        """Handle runner events and opened gates; wait for some if ``block``."""
        gates = self._gates_pending()
        sources = len(self.runners) + (1 if gates else 0)
        if block and sources == 0:
            raise RuntimeError(
                "pytest-executor: nothing can run and nothing is running "
                f"(running={sorted(self.queue.running)}); this is a bug"
            )
        # One source: block on it (events wake us at once); several: take turns.
        wait = (1.0 if sources == 1 else 0.05) if block else 0.0
        for runner in list(self.runners.values()):
            for name, data in runner.next_events(wait):
                self._handle(session, runner, name, data)
        if gates:
            self._poll_gates(wait if not self.runners else 0.0)

    def _drain(self, session: pytest.Session, runner: Runner) -> None:
        while True:
            events = runner.next_events(1.0)
            for name, data in events:
                if name == "finished":
                    return
                self._handle(session, runner, name, data)
            self._check_stop(session)

    def _handle(self, session: pytest.Session, runner: Runner, name: str, data: dict[str, Any]) -> None:
        """Replay one runner event (see :mod:`pytest_executor.backends._runner`)."""
        if name == "logstart":
            node = self.node_of[data["nodeid"]]
            state = self.remote.setdefault(node, _Remote())
            self.records[node].worker = data.get("worker", "")
            if not state.logstart_sent:
                state.logstart_sent = True
                item = self.plan.items[node]
                item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        elif name == "logreport":
            report: pytest.TestReport = data["report"]
            node = self.node_of[report.nodeid]
            state = self.remote.setdefault(node, _Remote())
            if state.holding or state.retrying:
                state.held.append(report)
            else:
                self.plan.items[node].ihook.pytest_runtest_logreport(report=report)
        elif name == "result":
            self._on_result(session, data["index"], data["outcome"], runner, data.get("worker"))
        elif name == "done":
            self._on_done(runner, data)
        elif name == "warning":
            self.config.hook.pytest_warning_recorded.call_historic(kwargs=data)
        elif name == "exit":  # pytest.exit() in a test: the run ends as in a serial one
            raise pytest.exit.Exception(data["message"], data["returncode"])
        elif name == "interrupt":  # a test raised KeyboardInterrupt: the run stops as on Ctrl-C
            raise KeyboardInterrupt
        elif name == "worker_lost":
            self._say(f"executor: worker {data.get('worker')} lost: {data.get('reason')}")
        elif name == "error":
            raise pytest.UsageError(f"executor backend {runner.name!r}: {data.get('message')}")

    def _on_result(
        self, session: pytest.Session, node: int, outcome: str, runner: Runner, worker: str | None = None
    ) -> None:
        state = self.remote.setdefault(node, _Remote())
        state.result_seen = True
        spec = self.plan.specs[node]
        stopping = session.shouldfail or session.shouldstop
        if outcome == "failed" and state.attempt <= spec.retries and not stopping:
            state.retrying = True
            if runner.defers_teardown and worker:
                # The worker finishes this attempt (its teardown, then "done") only
                # once it knows its next task: the retry, handed to it now.  Its
                # events come after this attempt's on the same channel.
                state.retry_submitted = True
                runner.submit(self._task(node, state.attempt + 1, worker=worker))
            return
        item = self.plan.items[node]
        state.holding = False
        for report in state.held:
            item.ihook.pytest_runtest_logreport(report=report)
        state.held.clear()
        # The replayed reports tell an xfail from a skip and a setup error from a
        # failure, so dependents get the skip reason of the pytest process.
        replayed = self.collected.get(node)
        if replayed:
            self.outcomes[node] = outcome_of(replayed)[0]
        else:
            self.outcomes[node] = {"passed": "passed", "skipped": "skipped"}.get(outcome, "failed")
        if node in self.queue.running:
            self._release(self.queue.finish(node))

    def _on_done(self, runner: Runner, data: dict[str, Any]) -> None:
        node = data["index"]
        state = self.remote.setdefault(node, _Remote())
        record = self.records[node]
        if state.retrying:
            status, message = outcome_of(state.held)
            duration = sum(report.duration for report in state.held)
            record.attempts.append(
                AttemptRecord(state.attempt, status, duration, data.get("worker", ""), message)
            )
            state.held.clear()
            if state.retry_submitted:
                self._begin_attempt(node, state.attempt + 1)
            else:
                self._submit(runner, node, state.attempt + 1)
            return
        if not state.result_seen:  # defensive: a runner that skipped "result"
            self._on_result(self.plan.items[node].session, node, "failed", runner)
        item = self.plan.items[node]
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        record.start = data.get("start", record.start)
        record.stop = data.get("stop", time.time())
        if record.ready is not None and record.start is not None:
            record.wait = max(0.0, record.start - record.ready)
        self._finalize(node, [self.collected.pop(node, [])], data.get("worker", record.worker))

    def _kill_runners(self) -> None:
        runners, self.runners = list(self.runners.values()), {}
        for runner in runners:
            runner.kill()

    # ------------------------------------------------------------ conditions

    def _condition_met(self, node: int) -> bool:
        """True when the item has no condition, or its gate job has run."""
        condition = self.plan.specs[node].condition
        if condition is None or node in self.gates_open:
            return True
        if node not in self.gates:
            self.gates[node] = self._submit_gate(node, condition)
        return False

    def _submit_gate(self, node: int, condition: Any) -> Any:
        from executor.engine import Engine, LocalJob

        if self.engine is None:
            self.engine = Engine()
            self.engine.start()
        wake = self.wakeups

        def opened(_result: object = None) -> None:
            wake.put(node)

        job = LocalJob(
            _gate, condition=condition, name=f"condition of {self.plan.items[node].nodeid}",
            callback=opened, error_callback=lambda _error: wake.put(node),
        )
        self.engine.submit(job)
        return job

    def _gates_pending(self) -> bool:
        return len(self.gates) > len(self.gates_open)

    def _poll_gates(self, timeout: float) -> None:
        try:
            self.wakeups.get(timeout=timeout) if timeout else self.wakeups.get_nowait()
        except queue.Empty:
            pass
        for node, job in self.gates.items():
            if node in self.gates_open:
                continue
            status = job.status
            if status in FINISHED_STATUSES:
                self.gates_open.add(node)
                if status != "done":
                    self.gates_failed[node] = f"could not be evaluated (gate job {status})"

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)


def _gate() -> None:
    """Body of a condition gate job: running it is the signal."""


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
    reasons = []
    soft = order_only(plan.items[node])  # pytest-order edges wait, never skip
    for dep in plan.deps.get(node, ()):
        outcome = outcomes.get(dep, "cancelled")
        if outcome not in OK_STATUSES and plan.items[dep].nodeid not in soft:
            reasons.append(f"{plan.items[dep].nodeid} {_VERBS.get(outcome, outcome)}")
    missing = [nodeid for nodeid in plan.missing.get(node, ()) if nodeid not in soft]
    reasons.extend(f"{nodeid} was not selected" for nodeid in missing)
    if gates_failed and node in gates_failed:
        return f"its condition {plan.specs[node].condition!r} {gates_failed[node]}"
    if not reasons:
        return None
    hint = f" (use --executor-with-deps to run {'it' if len(missing) == 1 else 'them'})" if missing else ""
    return "dependency " + "; ".join(reasons) + hint
