"""What the process pool adds for worker states, affinity and timeouts (see :mod:`.process`).

Routing: a call with a state, a worker or an affinity key scores the idle
workers (:meth:`StatefulPool._chooser`) and takes the best; a negative score
rules a worker out.  When no idle worker fits, a fresh one is forked if the
pool may grow and a fresh worker would fit, else the call waits for the next
change (a worker released or lost).
"""

from __future__ import annotations

import asyncio
import os
import signal
import typing as T

import cloudpickle

from ..._kill import kill_group, signal_name
from ..._pidfd import wait_exited
from ..job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError
from ._worker_handle import RemoteTraceback, Worker

if T.TYPE_CHECKING:  # pragma: no cover
    from ..state import WorkerState
    from .process import ProcessPool

ABORT_GRACE = 2.0
"""Seconds a worker stopped with SIGABRT gets to write its stack dump and exit before its group is killed."""


def crash_error(message: str, code: int | None, worker: Worker, output: str = "") -> WorkerCrashedError:
    """The error of a job whose worker died with exit status ``code`` (negative: a signal)."""
    sig = signal_name(-code) if code is not None and code < 0 else None
    return WorkerCrashedError(message, exitcode=code, signal=sig, output=output, worker_pid=worker.pid or None,
                              worker_id=worker.wid)


async def acquire_chosen(pool: "ProcessPool", choose: T.Callable[[Worker], int]) -> Worker:
    """Take the best idle worker by ``choose``'s score, fork one that fits, or wait for a change."""
    while True:
        pool._check_open()
        best, score = None, -1
        for worker in pool._idle:
            if worker.alive:
                value = choose(worker)
                if value > score:
                    best, score = worker, value
        if best is not None:
            pool._idle.remove(best)
            return best
        if len(pool._workers) < pool.max_workers and not any(choose(w) >= 0 for w in pool._workers):
            worker = pool._start_worker()
            try:
                await asyncio.shield(worker.ready)
            except asyncio.CancelledError:
                pool._release_when_ready(worker)
                raise
            if choose(worker) >= 0:
                return worker
            pool.release(worker)
            continue
        await pool.wait_changed()


def _only(holder: Worker) -> T.Callable[[Worker], int]:
    def choose(worker: Worker) -> int:
        return 0 if worker is holder else -1

    return choose


class StatefulPool:
    """Mixin of :class:`~.process.ProcessPool`: worker states, routing preferences, stack-dump kills."""

    _changed: "asyncio.Future[None] | None"
    _state_errors: dict[str, BaseException]
    _workers: list[Worker]
    loop: asyncio.AbstractEventLoop
    max_workers: int

    # ------------------------------------------------------------- changes
    def changed(self) -> None:
        """Wake the calls waiting for a worker that fits them (a worker was released or lost)."""
        fut, self._changed = self._changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_changed(self) -> None:
        """Wait for the next :meth:`changed`."""
        if self._changed is None:
            self._changed = self.loop.create_future()
        await asyncio.shield(self._changed)

    # ------------------------------------------------------------- routing
    def worker_ids(self) -> dict[int, int]:
        """Worker id → pid of the live, started workers."""
        return {w.wid: w.pid for w in self._workers if w.alive and w.pid}

    def _find(self, ident: int) -> Worker | None:
        for worker in self._workers:
            if worker.alive and (worker.wid == ident or (worker.pid and worker.pid == ident)):
                return worker
        return None

    def _chooser(self, state: "WorkerState | None", ident: int | None,
                 affinity: T.Hashable) -> T.Callable[[Worker], int]:
        wanted = self._find(ident) if ident is not None else None
        key = state.key if state is not None else None
        limit = state.max_workers if state is not None and state.max_workers else self.max_workers
        hosted = state is not None and state.hosted

        def choose(worker: Worker) -> int:
            if wanted is not None and wanted.alive:
                return 8 if worker is wanted else -1
            score = 0
            if key is not None:
                if key in worker.states:
                    score += 4
                elif sum(key in w.states for w in self._workers if w.alive) >= limit:
                    return -1
                elif hosted and worker.hosted is not None:
                    return -1
            if affinity is not None and worker.affinity == affinity:
                score += 2
            return score

        return choose

    # -------------------------------------------------------------- states
    def _raise_state_error(self, state: "WorkerState") -> None:
        error = self._state_errors.get(state.key)
        if error is not None:
            raise WorkerStateError(f"the setup of worker state {state.name!r} failed earlier "
                                   f"(drop the state to try again): {error}") from error

    async def _set_up(self, worker: Worker, state: "WorkerState") -> None:
        """Set ``state`` up in ``worker`` (already acquired); record a failure so it is not retried."""
        pool = T.cast("ProcessPool", self)
        worker.states.add(state.key)
        worker.capture = worker.capture or state.capture_output
        if state.hosted:
            worker.hosted = state.key
        try:
            reply = await pool.request(worker, cloudpickle.dumps(state.request()))
        except WorkerCrashedError as exc:
            self._state_errors[state.key] = exc
            raise WorkerStateError(f"the worker died while setting up worker state {state.name!r}: {exc}") from exc
        except BaseException:
            worker.states.discard(state.key)
            raise
        if reply[0] == "err":
            worker.states.discard(state.key)
            worker.hosted = None
            error = reply[1]
            if reply[2]:
                error.__cause__ = RemoteTraceback(reply[2])
            self._state_errors[state.key] = error
            raise WorkerStateError(f"the setup of worker state {state.name!r} failed in worker "
                                   f"{worker.wid} (pid {worker.pid}): {error!r}") from error
        worker.infos[state.key] = reply[1]

    def state_info(self, state: "WorkerState") -> dict[int, T.Any]:
        """Worker id → the ``info`` its hosted ``state`` sent with ``serve()`` (None for ``setup=`` states)."""
        return {w.wid: w.infos.get(state.key) for w in self._workers if w.alive and state.key in w.states}

    async def drop_state(self, state: "WorkerState") -> None:
        """Tear ``state`` down in every worker holding it (waits for their running jobs); forget a failed setup."""
        pool = T.cast("ProcessPool", self)
        self._state_errors.pop(state.key, None)
        for holder in [w for w in self._workers if state.key in w.states]:
            if not holder.alive:
                continue
            worker = await pool.acquire(_only(holder))
            try:
                reply = await pool.request(worker, cloudpickle.dumps(("drop", state.key)))
            finally:
                worker.states.discard(state.key)
                worker.infos.pop(state.key, None)
                if worker.hosted == state.key:
                    worker.hosted = None
            pool.release(worker)
            if reply[0] == "err":
                raise WorkerStateError(f"dropping worker state {state.name!r} failed in worker {worker.wid}: "
                                       f"{reply[1]!r}") from reply[1]

    # --------------------------------------------------------------- kills
    async def abort(self, worker: Worker, grace: float = ABORT_GRACE) -> str:
        """Stop ``worker`` with SIGABRT (faulthandler writes every thread's stack to its stderr), give it
        ``grace`` seconds, then kill its process group; the pool forks a replacement.

        Returns the signal that ended it: ``"SIGABRT"``, or ``"SIGKILL"`` if it did not exit in time.
        """
        pool = T.cast("ProcessPool", self)
        pid, pidfd, ended = worker.pid, worker.pidfd, "SIGKILL"
        if worker.alive and pid:
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
            if await self.loop.run_in_executor(None, wait_exited, pid, pidfd, grace):
                ended = "SIGABRT"
            kill_group(pid)  # what the worker started, and the worker if it did not exit
        pool.kill(worker)
        return ended

    async def _timeout_error(self, worker: Worker) -> WorkerTimeoutError:
        pid, wid = worker.pid, worker.wid
        ended = await self.abort(worker)
        code = -int(getattr(signal, ended))
        return WorkerTimeoutError(
            f"the job timed out: worker {wid} (pid {pid}) was stopped with SIGABRT "
            f"(its stack dump is in .output) and {'exited' if ended == 'SIGABRT' else 'killed'}",
            exitcode=code, signal=ended, output=worker.output_text(), worker_pid=pid, worker_id=wid)
