"""What the process pool adds for worker states, affinity, prefetch and timeouts (see :mod:`.process`).

Routing: a call with a state, a worker or an affinity key scores the idle
workers (:meth:`StatefulPool._chooser`) and takes the best; a negative score
rules a worker out.  When no idle worker fits, a fresh one is forked if the
pool may grow and a fresh worker would fit, else the call waits for the next
change (a worker released or lost).

Prefetch (``ProcessPool(prefetch=N)``, off by default): when no idle worker
fits, a call may be sent at once to a busy worker that fits and holds fewer
than ``N`` calls queued behind the one it runs, so that the worker starts it
the moment it sends the previous reply, without waiting for a round trip
through the engine.  That is what a stream of short calls needs (a test
suite: one call per test).  A queued call carries a sequence number;
cancelling it before it starts sends ``("skip", seq)``, which the worker
reads before it starts a call, and the worker stays.  A queued call whose
worker dies never started: it is run on another worker (:class:`NotStarted`
tells its caller).  The engine's own ProcessJobs do not prefetch: the engine
runs at most one per worker, a job that is "running" must run.

One-shot workers (``ProcessPool.run(..., retire=True)``, :meth:`StatefulPool.retire`):
after that call the worker ends, so no later call shares its process (a
state that cannot be undone: a pytest session over one test, a native
library that leaks).  The call returns once the process has exited, and the
worker counts against ``max_workers`` until then; the next call gets a
freshly forked worker.
"""

from __future__ import annotations

import asyncio
import signal
import typing as T

import cloudpickle

from ..._kill import kill_group, kill_pid, signal_name
from ..._pidfd import close_pidfd, wait_exited
from ..job.utils import WorkerCrashedError, WorkerStateError, WorkerTimeoutError
from ._frames import send_frame
from ._worker_handle import Call, RemoteTraceback, Worker

if T.TYPE_CHECKING:  # pragma: no cover
    from ..state import WorkerState
    from .process import ProcessPool

RETIRE_GRACE = 30.0
"""Seconds a retired worker gets to end its states and exit before its process group is killed."""
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
            worker = await _start_ready_worker(pool)
            if choose(worker) >= 0:
                return worker
            pool.release(worker)
            continue
        await pool.wait_changed()


class NotStarted(Exception):
    """A prefetched call's worker ended before the call started: the caller runs it elsewhere."""


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

    async def acquire_call(self, state: "WorkerState | None", ident: int | None,
                           affinity: T.Hashable) -> tuple[Worker, bool]:
        """A worker for one call, and whether the call goes *ahead* (queued behind the worker's running call).

        Without prefetch: :meth:`ProcessPool.acquire` (with a chooser when the
        call has a state, a worker or an affinity).  With prefetch: the best
        idle worker, else a fresh one while the pool has fewer than its eager
        size, else a busy one with room in its queue, else wait for a change.
        """
        pool = T.cast("ProcessPool", self)
        plain = state is None and ident is None and affinity is None
        choose = None if plain else self._chooser(state, ident, affinity)
        if pool.prefetch <= 0 and not pool.eager:
            return await pool.acquire(choose), False
        key = state.key if state is not None else None
        while True:
            pool._check_open()
            best, score = None, -1
            # Among equals the worker released last: the one whose reply just released this call's
            # caller (a test whose dependency it ran tears that one down first).
            for worker in reversed(pool._idle):
                value = choose(worker) if choose is not None else 0
                if worker.alive and value > score:
                    best, score = worker, value
            if best is not None:
                pool._idle.remove(best)
                return best, False
            if len(self._workers) < pool._eager_workers:
                worker = await _start_ready_worker(pool)
                if choose is None or choose(worker) >= 0:
                    return worker, False
                pool.release(worker)
                continue
            target = self._prefetch_target(choose, key, pool.prefetch) if pool.prefetch > 0 else None
            if target is not None:
                return target, True
            await self.wait_changed()

    def _prefetch_target(self, choose: T.Callable[[Worker], int] | None, key: str | None,
                         depth: int) -> Worker | None:
        """The busy worker that fits best with fewer than ``depth`` calls queued behind its running one."""
        best, rank = None, (-1, 0)
        for worker in self._workers:
            calls = worker.calls
            # Only behind ordinary calls (they carry a seq): not a generator's steps, a setup or a drop.
            if not worker.alive or not calls or len(calls) > depth or any(c.seq is None for c in calls):
                continue
            if key is not None and key not in worker.states:
                continue
            score = choose(worker) if choose is not None else 0
            if score >= 0 and (score, -len(calls)) > rank:
                best, rank = worker, (score, -len(calls))
        return best

    def _skip(self, worker: Worker, call: Call) -> None:
        """Cancel a prefetched call that has not started (its ``skipped`` reply is dropped on arrival)."""
        try:
            send_frame(worker.sock, cloudpickle.dumps(("skip", call.seq)))
        except OSError as exc:
            T.cast("ProcessPool", self)._lost(worker, f"cannot send to worker: {exc}")

    def _take_calls(self, worker: Worker) -> Call | None:
        """Forget the calls sent to a worker that is gone: the running one is returned, the
        prefetched ones fail with :class:`NotStarted` (their callers run them elsewhere)."""
        calls = list(worker.calls)
        worker.calls.clear()
        head = calls[0] if calls and calls[0].started else None
        for call in calls:
            if call is not head and not call.fut.done():
                call.fut.set_exception(NotStarted())
        return head

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
            request = state.request()
            if state.hosted:
                request = (*request, worker.wid)  # the host learns the engine's id of its worker
            reply = await pool.request(worker, cloudpickle.dumps(request))
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

    # ------------------------------------------------------------ retiring
    async def retire(self, worker: Worker, grace: float = RETIRE_GRACE) -> int | None:
        """End an idle ``worker`` for good and wait until its process has exited; return its exit status.

        Its socket is closed: it tears its worker states down (a hosted state's
        ``serve`` returns) and exits.  Until then it takes no call but counts
        against ``max_workers``, so a pool of one-shot workers (``run(...,
        retire=True)``) never runs more processes than that.  One still running
        after ``grace`` seconds is killed with its process group.  None: the
        status is unknown (the zygote is gone).
        """
        pool = T.cast("ProcessPool", self)
        if not worker.alive:
            return None
        worker.alive, worker.retiring = False, True
        if worker in pool._idle:
            pool._idle.remove(worker)
        if worker.reading:
            self.loop.remove_reader(worker.sock.fileno())
            worker.reading = False
        worker.sock.close()
        zygote = pool._zygote
        code: int | None = None
        try:
            if zygote is not None and worker.pid:
                codes = zygote.exit_code(worker.pid)
                try:
                    code = await asyncio.wait_for(asyncio.shield(codes), grace)
                except asyncio.TimeoutError:
                    kill_group(worker.pid)
                    code = await codes
        finally:
            worker.retiring = False
            if worker in self._workers:
                self._workers.remove(worker)
            close_pidfd(worker.pidfd)
            worker.pidfd = None
            worker.close_outputs(self.loop)  # what it wrote while ending, then its pipes are closed
            self.changed()
            pool._refill()
        return code

    # --------------------------------------------------------------- kills
    async def abort(self, worker: Worker, grace: float = ABORT_GRACE) -> str:
        """Stop ``worker`` with SIGABRT (faulthandler writes every thread's stack to its stderr), give it
        ``grace`` seconds, then kill its process group; the pool forks a replacement.

        Returns the signal that ended it: ``"SIGABRT"``, or ``"SIGKILL"`` if it did not exit in time.
        """
        pool = T.cast("ProcessPool", self)
        pid, pidfd, ended = worker.pid, worker.pidfd, "SIGKILL"
        if worker.alive and pid:
            # The pidfd is ours while a thread waits on it: the worker's socket closes as it dies,
            # and the pool's loss handling would otherwise close the fd under the waiting select().
            worker.pidfd = None
            try:
                kill_pid(pid, signal.SIGABRT)
                if await self.loop.run_in_executor(None, wait_exited, pid, pidfd, grace):
                    ended = "SIGABRT"
                kill_group(pid)  # what the worker started, and the worker if it did not exit
            finally:
                if worker.alive:
                    worker.pidfd = pidfd  # kill() below waits on it and closes it
                else:
                    close_pidfd(pidfd)
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


async def _start_ready_worker(pool: ProcessPool) -> Worker:
    """A fresh worker of ``pool`` once it is ready; cancelled meanwhile, it goes back to the pool when ready."""
    worker = pool._start_worker()
    try:
        await asyncio.shield(worker.ready)
    except asyncio.CancelledError:
        pool._release_when_ready(worker)
        raise
    return worker
