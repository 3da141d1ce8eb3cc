"""The ``subprocess`` backend: every item runs in a fresh pytest process, a one-shot worker of the engine's pool.

Full isolation: nothing (module state, fixtures, monkeypatching, leaked
threads, a crash) carries over from one test to the next.  Each item is a
pytest session of its own over the controller's options, with the item's
node id as the only positional argument, hosted as a
:class:`executor.engine.WorkerState` (:mod:`._hosted`) in a worker of an
:class:`executor.engine.backend.process.ProcessPool`.  Two calls per item:
the first runs it (answered with its outcome, under the item's timeout), the
second tears it down and *retires* the worker (``run(..., retire=True)``):
it returns once the process has exited, and the next item gets a freshly
forked one.  The pool's zygote is started with ``python -c`` (never forked
from the controller), so a worker inherits none of the controller's modules.

Reports, crashes (exit code or signal, the output so far), timeouts (a
SIGABRT stack dump), Ctrl-C and ``-x`` are handled as on the ``process``
backend (:class:`~pytest_executor.backends.process.ProcessRunner`, whose
event handling this reuses).  What differs: a crash report does not say the
worker was replaced (every item gets a new process anyway), a crash while
tearing down is reported as a failed teardown, and a session that ends
before it collected its item fails that item (not the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from functools import partial
from typing import Any, final

import pytest

from executor.engine import WorkerState
from executor.engine.job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError

from pytest_executor.backends import _hosted
from pytest_executor.backends._failed_item import crash_message, exit_reason, trim_stack_dump
from pytest_executor.backends._invocation import drop_basetemp, make_basetemp, python_prefix, split_invocation_args
from pytest_executor.backends._protocol import ENV_ONESHOT
from pytest_executor.backends._runner import Event, ItemTask
from pytest_executor.backends.process import ProcessRunner


def _oneshot_session(cwd: str, path: list[str], env: dict[str, str], argv0: str, args: list[str], basetemp: str,
                     serve: _hosted.Serve) -> int:
    """The host of one item's session, set up as ``pytest <nodeid>`` started now by the controller would be.

    In the invocation directory, with the controller's environment as it is
    now, the ``sys.path`` of a fresh interpreter (:func:`_fresh_path`) and
    the ``sys.argv`` of ``python -m pytest`` (or of the console script).
    """
    os.chdir(cwd)
    os.environ.clear()
    sys.path[:] = path
    sys.argv[:] = [argv0, *args]
    return _hosted.host_session(args, basetemp, {**env, ENV_ONESHOT: "1"}, SubprocessRunner.worker_prefix, serve)


def _fresh_path(cwd: str) -> list[str]:
    """The ``sys.path`` of ``pytest`` started afresh the way the controller was (``python -m pytest``: cwd first)."""
    probe = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
                           capture_output=True, text=True, cwd=cwd, check=False)
    try:
        path = [str(entry) for entry in json.loads(probe.stdout)]
    except ValueError:  # an interpreter that prints at start-up: keep the controller's
        return list(sys.path)
    return [cwd, *path] if python_prefix()[1:3] == ["-m", "pytest"] else path


@final
class SubprocessRunner(ProcessRunner):
    """At most ``workers`` one-shot pytest processes at a time, one per task."""

    name = "subprocess"
    worker_prefix = "s"
    defers_teardown = False  # a one-shot worker tears its item down at once

    def __init__(self, config: pytest.Config, workers: int) -> None:
        super().__init__(config, workers)
        self._options: list[str] = []
        self._forward = False
        self._path: list[str] = []
        self._argv0 = "-c"
        self._running = 0  # tasks whose process has not ended yet (their slot is not free)

    def prefork(self) -> bool:
        """Never fork the controller: the workers' zygote is a fresh ``python -c`` interpreter."""
        return False

    def start(self, session: pytest.Session) -> None:
        """Start the pool's loop; processes are forked per task (idempotent)."""
        if self._session is not None:
            return
        self._session = session
        self._forward = self.config.getoption("capture", default="fd") in ("no", "tee-sys")
        options, _ = split_invocation_args(self.config)
        self._options = drop_basetemp(options)
        self._basetemp, self._own_basetemp = make_basetemp(self.config)
        self._path = _fresh_path(str(self.config.invocation_params.dir))
        self._argv0 = sys.argv[0] if python_prefix()[1:3] == ["-m", "pytest"] else "-c"
        self._start_pool()

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; its process is forked once a slot is free."""
        self._running += 1
        super().submit(task)

    def _depth(self) -> int:
        return 1  # one item per process, nothing prefetched

    def _node_arg(self, nodeid: str) -> str:
        """An absolute path form of ``nodeid`` (node ids are relative to the rootdir)."""
        path, sep, rest = nodeid.partition("::")
        return str(self.config.rootpath / path) + sep + rest

    async def _run(self, task: ItemTask) -> None:
        """Run one task in a process of its own (on the loop thread); post its answers or its failure."""
        assert self._pool is not None and self._pool_loop is not None and self._basetemp is not None
        pool, loop, current = self._pool, self._pool_loop.loop, asyncio.current_task()
        host = partial(_oneshot_session, str(self.config.invocation_params.dir), self._path, dict(os.environ), self._argv0,
                       [*self._options, self._node_arg(task.nodeid)], str(self._basetemp))
        state = WorkerState(host=host, name="pytest-item", max_workers=1, capture_output=not self._forward)
        timer: list[asyncio.TimerHandle] = []
        timed_out: list[bool] = []
        started: list[float] = []
        ran_on: list[Any] = []

        def on_worker(worker: Any) -> None:
            ran_on.append(worker)
            self._captures.open(worker.wid, worker.infos.get(state.key))  # now, while it is alive

        def on_start() -> None:
            started.append(time.time())
            self._post(("started", task, ran_on[-1].wid))
            if task.timeout:
                timer.append(loop.call_later(task.timeout, expire))

        def expire() -> None:
            timed_out.append(True)
            if current is not None:
                current.cancel()

        when = "call"
        try:
            events = await pool.run(_hosted.run_task, ((task.index, -1, task.nodeid, task.timeout),), {}, state=state,
                                    on_worker=on_worker, timed_out=lambda: bool(timed_out), on_start=on_start)
            for handle in timer:
                handle.cancel()
            wid = ran_on[-1].wid
            self._post(("answer", task, wid, events))
            when = "teardown"
            events = await pool.run(_hosted.shut_down, (), {}, state=state, worker=wid, retire=True)
            self._post(("answer", task, wid, events))
        except (WorkerCrashedError, WorkerTimeoutError) as exc:
            self._post(("crashed", task, exc, started[0] if started else 0.0, when))
        except WorkerStateError as exc:
            self._post(("unready", task, exc))
            with contextlib.suppress(Exception):
                await pool.drop_state(state)  # forgets the failed setup (no worker holds the state)
        except asyncio.CancelledError:
            pass  # the run is being stopped
        except BaseException as exc:  # noqa: BLE001 - the run must hear of every failure
            if when == "call":
                self._post(("failed", task, exc, ""))
            # else the session ended on its own (pytest.exit, an interrupt): no teardown was left to run
        finally:
            for handle in timer:
                handle.cancel()
            self._post(("ended", ran_on[-1].wid if ran_on else None))

    # -- posts from the loop ------------------------------------------------

    def _on_post(self, post: tuple[Any, ...], events: list[Event]) -> None:
        kind = post[0]
        if kind == "crashed":
            self._on_oneshot_crash(post[1], post[2], post[3], post[4], events)
        elif kind == "unready":
            self._on_unready(post[1], post[2], events)
        elif kind == "ended":
            self._captures.take(post[1])  # closes them
            self._running -= 1
            self._maybe_close_sessions()
        else:
            super()._on_post(post, events)

    def _on_oneshot_crash(self, task: ItemTask, exc: WorkerCrashedError | WorkerTimeoutError, start: float,
                          when: str, events: list[Event]) -> None:
        label = self._label(exc.worker_id)
        timeout = (task.timeout or 0.0) if isinstance(exc, WorkerTimeoutError) else None
        message = crash_message(task.nodeid, label, exc.exitcode, exc.output or "", timeout, replaced=False,
                                teardown=when == "teardown")
        self._fail_task(task, label, when, message, self._captures.take(exc.worker_id), start, events)
        events.append(("worker_lost", {"worker": label, "reason": "timeout" if timeout is not None
                                       else exit_reason(exc.exitcode)}))

    def _on_unready(self, task: ItemTask, exc: WorkerStateError, events: list[Event]) -> None:
        """The item's session ended (or failed) before it collected: the item fails, the run goes on."""
        cause = exc.__cause__
        if isinstance(cause, WorkerCrashedError):
            label, reason, output = self._label(cause.worker_id), exit_reason(cause.exitcode), cause.output or ""
        else:
            label, reason, output = self.worker_prefix + "?", "its session failed", str(cause or exc)
        tail = "\n".join(trim_stack_dump(output.rstrip("\n").splitlines())[-60:])
        message = f"subprocess worker {label} ended before it collected {task.nodeid} ({reason}):\n{tail}"
        self._fail_task(task, label, "setup", message, ("", ""), 0.0, events)

    def _maybe_close_sessions(self) -> None:
        """Finished once every task's process has ended (each ends its own session)."""
        if self._finishing and not self._backlog and not self._in_flight and self._running <= 0:
            self._finished = True

    def close(self) -> None:
        """Config cleanup: every process ended with its task; stop the pool (and kill what is left)."""
        self.kill()


__all__ = ["SubprocessRunner"]
