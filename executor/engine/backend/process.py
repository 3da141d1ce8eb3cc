"""The process backend: a warm pool of worker processes owned by one engine.

Workers are forked by a *zygote*: one single-threaded process per pool that
forks a new worker, ready in about a millisecond, whenever the pool asks.
Two ways to get one:

* forked from the engine process by ``Engine.start()`` while that process
  is still single-threaded (before the loop thread starts; see
  :func:`can_fork_zygote` and ``EngineSetting.fork_zygote``): about a
  millisecond, and workers start with the program's modules imported.  It
  neutralises what it inherited (fds, signal handlers, atexit functions:
  :func:`executor.engine.backend._process_worker.forked_zygote_main`);
* otherwise a small ``python -c`` process started on the pool's first need,
  running :func:`executor.engine.backend._process_worker.zygote_main`: it
  imports cloudpickle once and never runs the user's ``__main__``.  Why not ``multiprocessing``: ``fork`` of the engine itself is
unsafe once the engine's loop thread exists (and warns on Python 3.12+), while
``spawn``/``forkserver`` re-run the user's ``__main__`` script in every child,
which breaks scripts without an ``if __name__ == "__main__"`` guard.
cloudpickle sends ``__main__`` functions and lambdas by value, so workers never
need the main script.

The pool grows lazily up to ``max_workers`` and keeps its workers for the
engine's life: at once up to one worker per CPU, beyond that only while jobs
wait and no worker has finished a job for :data:`GROW_DELAY` seconds.  Short
jobs are served faster by the workers there are than by forking more (each
fork costs CPU the jobs need); long or sleepy ones get a worker each,
:data:`GROW_DELAY` late.  Replies and output of workers and of the zygote are read
by the event loop (``add_reader``): no helper thread.  A cancelled job's worker is
killed (with its process group) and replaced; a worker that dies unexpectedly
fails its job with :class:`~executor.engine.job.utils.WorkerCrashedError`.

Nothing outlives the engine: workers die with the zygote (``PR_SET_PDEATHSIG``
on Linux), and the zygote ends when the engine closes its control socket, or
is killed with the engine's loop thread, or sees EOF when the engine is killed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import socket
import typing as T
import weakref

if T.TYPE_CHECKING:  # pragma: no cover
    from ..state import WorkerState

import cloudpickle

from ..._kill import kill_group
from ..._pidfd import close_pidfd, open_pidfd, pid_running, wait_exited
from ..job.utils import WorkerCrashedError
from ..log import logger
from ._frames import dumps, recv_frame, send_frame
from ._stateful import NotStarted, StatefulPool, acquire_chosen, crash_error
from ._worker_handle import Call, RemoteTraceback, Worker, _unwrap
from ._zygote import SpareZygote, Zygote, _stop_reading_and_close, can_fork_zygote, fork_zygote

__all__ = ["ProcessPool", "RemoteTraceback", "SpareZygote", "Worker", "can_fork_zygote", "fork_zygote"]

GROW_DELAY = 0.05
"""Seconds without any finished job, while jobs wait, before the pool forks more workers (beyond one per CPU)."""
_EXIT_CODE_WAIT = 1.0
"""Seconds to wait for the exit code of a worker whose socket closed (it is killed after)."""


class ProcessPool(StatefulPool):
    """A lazily grown pool of at most ``max_workers`` warm worker processes."""

    def __init__(self, max_workers: int, loop: asyncio.AbstractEventLoop,
                 spare: SpareZygote | None = None, *, prefetch: int = 0, eager: bool = False,
                 on_output: T.Callable[[int, bytes], None] | None = None) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.max_workers = max_workers
        self.loop = loop
        self.prefetch = prefetch
        """Calls a busy worker may hold queued behind the one it runs (see :mod:`._stateful`); settable."""
        self.eager = eager
        self.on_output = on_output
        """Called on the loop with each chunk a worker writes (1: stdout, 2: stderr), captured or not."""
        """Fork up to ``max_workers`` at once for calls that find no idle worker (else up to one per CPU)."""
        self._eager_workers = max_workers if eager else min(max_workers, os.cpu_count() or 1)
        self._seqs = itertools.count(1)
        self._grow_timer: asyncio.TimerHandle | None = None
        self._replies = 0  # replies of workers so far: the progress _grow looks for
        self._replies_at_arm = 0
        self._growing = 0  # workers forked for the waiting callers, not ready yet
        self._spare = spare  # adopted by the first zygote, if still alive then
        self._zygote: Zygote | None = None
        self._workers: list[Worker] = []
        self._idle: collections.deque[Worker] = collections.deque()
        self._queue: collections.deque[asyncio.Future] = collections.deque()
        self._closed = False
        self._functions: "weakref.WeakKeyDictionary[T.Any, tuple[int, bytes]]" = weakref.WeakKeyDictionary()
        self._tokens = itertools.count(1)
        self._wids = itertools.count(1)
        self._changed: asyncio.Future[None] | None = None
        self._state_errors: dict[str, BaseException] = {}

    # ------------------------------------------------------------------ API
    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.pid for w in self._workers if (w.alive or w.retiring) and w.pid]

    @property
    def zygote_pid(self) -> int | None:
        """Process id of the zygote that forks the workers (None before the first worker)."""
        return self._zygote.pid if self._zygote is not None and self._zygote.alive else None

    async def run(
        self,
        func: T.Callable[..., T.Any],
        args: tuple,
        kwargs: dict,
        on_worker: T.Callable[[Worker], None] | None = None,
        *,
        state: "WorkerState | None" = None,
        worker: int | None = None,
        affinity: T.Hashable = None,
        timed_out: T.Callable[[], bool] | None = None,
        on_start: T.Callable[[], None] | None = None,
        retire: bool = False,
    ) -> T.Any:
        """Run ``func(*args, **kwargs)`` in a worker and return its result (raise its error).

        ``state``: run ``func(value, *args, **kwargs)`` on a worker holding that
        :class:`~executor.engine.state.WorkerState` (set up first if needed).
        ``worker``: a worker id or pid to run on if it is alive (else anywhere).
        ``affinity``: prefer the worker that last ran a job with this key.
        ``timed_out``: asked when the call is cancelled; True means the attempt
        timed out: the worker is stopped with a stack dump (:meth:`abort`) and
        :class:`~executor.engine.job.utils.WorkerTimeoutError` is raised.
        ``on_start``: called when the worker starts the call (later than the send if it was prefetched).
        ``retire``: the worker's last call: then it ends (:meth:`retire`); returns once it has exited.
        """
        if state is not None:
            self._raise_state_error(state)
        while True:
            chosen, ahead = await self.acquire_call(state, worker, affinity)
            try:
                return await self._call_on(chosen, ahead, func, args, kwargs, on_worker, state, affinity, timed_out,
                                           on_start, retire)
            except NotStarted:  # it waited in a worker that died before it could start: run it elsewhere
                continue

    async def _call_on(self, chosen: Worker, ahead: bool, func: T.Callable[..., T.Any], args: tuple, kwargs: dict,
                       on_worker: T.Callable[[Worker], None] | None, state: "WorkerState | None",
                       affinity: T.Hashable, timed_out: T.Callable[[], bool] | None,
                       on_start: T.Callable[[], None] | None = None, retire: bool = False) -> T.Any:
        """Run the call on ``chosen``: acquired, or busy with ``ahead`` (prefetched) calls it runs first."""
        key = state.key if state is not None else None
        call: Call | None = None
        try:
            if state is not None and key not in chosen.states:
                await self._set_up(chosen, state)
            if on_worker is not None:
                on_worker(chosen)
            if affinity is not None:
                chosen.affinity = affinity
            seq = next(self._seqs)
            payload = self._call_payload(chosen, func, args, kwargs, key, seq if ahead else None)
            def started(worker: Worker = chosen) -> None:
                worker.tail.clear()  # crash and timeout reports show the output of this job only
                if on_start is not None:
                    on_start()

            if not ahead:
                started()
            call = self._send(chosen, payload, seq, started)
            reply = await call.fut
            if reply[0] == "missing":  # the worker evicted the function: send it in full
                chosen.known.discard(reply[1])
                call = self._send(chosen, self._call_payload(chosen, func, args, kwargs, key, seq), seq)
                reply = await call.fut
        except asyncio.CancelledError:
            if call is not None and not call.started and chosen.alive:
                self._skip(chosen, call)  # it never started: the worker skips it and stays
                raise
            if timed_out is not None and timed_out() and chosen.alive:
                raise await self._timeout_error(chosen) from None
            self.kill(chosen)
            raise
        except NotStarted:
            raise
        except BaseException:
            self.discard_if_dead(chosen)
            raise
        await self.retire(chosen) if retire else self.release(chosen)
        return _unwrap(reply)

    async def acquire(self, choose: T.Callable[[Worker], int] | None = None) -> Worker:
        """Take an idle worker, fork one if below the limit, else wait for one.

        ``choose(worker)`` scores workers: the highest-scored idle one is
        taken; a negative score means "not this one" (see :mod:`._routing`).
        """
        self._check_open()
        if choose is not None:
            return await acquire_chosen(self, choose)
        while self._idle:
            worker = self._idle.popleft()
            if worker.alive:
                return worker
        if len(self._workers) < self._eager_workers:
            worker = self._start_worker()
            try:
                await asyncio.shield(worker.ready)
            except asyncio.CancelledError:
                self._release_when_ready(worker)  # someone else will use it
                raise
            return worker
        fut: asyncio.Future[Worker] = self.loop.create_future()
        self._queue.append(fut)
        if len(self._workers) < self.max_workers and self._grow_timer is None:
            self._arm_growth()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            raise

    def release(self, worker: Worker) -> None:
        """Give a worker back (to a waiting caller first); one with prefetched calls stays theirs."""
        self.changed()
        if not worker.alive or self._closed or worker.calls:
            return
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(worker)
                return
        self._idle.append(worker)

    async def request(self, worker: Worker, payload: bytes) -> tuple:
        """Send one request to ``worker`` and await its reply tuple."""
        return await self._send(worker, payload).fut

    def _send(self, worker: Worker, payload: bytes, seq: int | None = None,
              on_start: T.Callable[[], None] | None = None) -> Call:
        """Send one request; its reply resolves the returned call's future (requests queue in the worker)."""
        call = Call(self.loop.create_future(), seq, on_start, started=not worker.calls)
        worker.calls.append(call)
        try:
            send_frame(worker.sock, payload)
        except OSError as exc:
            self._lost(worker, f"cannot send to worker: {exc}")
        return call

    def kill(self, worker: Worker) -> None:
        """Kill a worker (and its process group) and fork a replacement if the pool is open."""
        if not worker.alive:
            return
        self._forget(worker)
        if worker.pid:
            if self._zygote is not None:
                self._zygote.forget(worker.pid)
            kill_group(worker.pid)
            if not wait_exited(worker.pid, worker.pidfd, 5.0):  # pragma: no cover - SIGKILL is not ignorable
                logger.warning(f"worker process {worker.pid} survived SIGKILL for 5 s")
        close_pidfd(worker.pidfd); worker.pidfd = None
        if not self._closed:  # keep the pool warm
            self._release_when_ready(self._start_worker())

    def discard_if_dead(self, worker: Worker) -> None:
        """Make sure a worker whose request failed is not reused if it died."""
        if worker.alive and worker.pid and not pid_running(worker.pid, worker.pidfd):
            self._forget(worker)
            close_pidfd(worker.pidfd); worker.pidfd = None

    def shutdown(self) -> None:
        """Stop every worker: idle ones exit on EOF, busy ones are killed; reap them and the zygote."""
        self._closed = True
        if self._grow_timer is not None:
            self._grow_timer.cancel()
            self._grow_timer = None
        for fut in self._queue:
            if not fut.done():
                fut.cancel()
        self._queue.clear()
        stopping = list(self._workers)
        for worker in stopping:
            busy = worker.busy
            self._forget(worker)
            if busy and worker.pid:
                kill_group(worker.pid)
            close_pidfd(worker.pidfd); worker.pidfd = None
        if self._zygote is not None:
            zygote, self._zygote = self._zygote, None
            zygote.close()  # returns once the zygote has reaped every worker
        for worker in stopping:  # what they wrote while ending (teardowns), then their pipes are closed
            worker.close_outputs(self.loop)
        if self._spare is not None:
            spare, self._spare = self._spare, None
            spare.close()

    # ------------------------------------------------------------ internals
    def _call_payload(self, worker: Worker, func: T.Callable[..., T.Any], args: tuple, kwargs: dict,
                      key: str | None = None, seq: int | None = None) -> bytes:
        """Pickle a call; a function is pickled once per pool and sent once per worker.

        Functions cloudpickled by value (``__main__``, lambdas, closures) are the
        costly part of a tiny job, so they are cached by identity: like a
        forked ``ProcessPoolExecutor``, a worker keeps the function's globals
        as they were when it first received it.
        """
        try:
            entry = self._functions.get(func)
        except TypeError:  # not weak-referenceable / unhashable: no caching
            entry = None
            cacheable = False
        else:
            cacheable = True
        if entry is None:
            entry = (next(self._tokens), cloudpickle.dumps(func))
            try:
                if cacheable:
                    self._functions[func] = entry
            except TypeError:
                cacheable = False
        token, data = entry
        tail = (key,) if seq is None else (key, seq)  # a seq makes the worker look for a skip first
        if cacheable and token in worker.known:
            return dumps(("callc", token, None, args, kwargs, *tail))
        if cacheable:
            worker.known.add(token)
        return dumps(("callc", token, data, args, kwargs, *tail))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the process pool is shut down (the engine was stopped)")

    def _start_worker(self) -> Worker:
        """Ask the zygote (started if needed) for a worker; it counts against the limit at once."""
        if self._zygote is None or not self._zygote.alive:
            if self._zygote is not None:
                self._zygote.close()
            spare, self._spare = self._spare, None
            if spare is not None and not spare.alive:
                spare.close()
                spare = None
            self._zygote = Zygote(self.loop, spare)
        parent_sock, child_sock = socket.socketpair()
        worker = Worker(parent_sock, self.loop.create_future(), next(self._wids))
        worker.listener = self.on_output
        outputs = worker.open_outputs()
        try:
            forked = self._zygote.fork(child_sock, outputs)
        finally:
            child_sock.close()  # the zygote got its own copies with the request
            for fd in outputs:
                os.close(fd)
        self._workers.append(worker)
        forked.add_done_callback(lambda fut: self._on_forked(worker, fut))
        return worker

    def _on_forked(self, worker: Worker, forked: "asyncio.Future[int]") -> None:
        error = forked.exception() if not forked.cancelled() else WorkerCrashedError("fork cancelled")
        if error is None and worker.alive:
            worker.pid = forked.result()
            worker.pidfd = open_pidfd(worker.pid)
            worker.reading = True
            self.loop.add_reader(worker.sock.fileno(), self._on_readable, worker)
            worker.watch_outputs(self.loop)
            worker.ready.set_result(None)
            return
        self._forget(worker)
        if error is None:  # the pool dropped it meanwhile (shutdown): its socket is closed, it exits
            error = WorkerCrashedError("the process pool was shut down")
        worker.ready.set_exception(error)
        worker.ready.exception()  # retrieved here: no "never retrieved" noise if nobody awaits it
        zygote = self._zygote
        if zygote is not None and not zygote.answered and not zygote.alive:
            self._fail_waiters(error)  # the zygote could not even start: do not retry for every job
        else:
            self._refill()

    def _arm_growth(self) -> None:
        self._replies_at_arm = self._replies
        self._grow_timer = self.loop.call_later(GROW_DELAY, self._grow)

    def _grow(self) -> None:
        """Jobs still wait: if no worker came back meanwhile, fork one for each waiting job."""
        self._grow_timer = None
        if self._closed:
            return
        waiting = sum(not fut.done() for fut in self._queue)
        if not waiting or len(self._workers) >= self.max_workers:
            return
        if self._replies == self._replies_at_arm:  # no worker made progress: more workers help
            for _ in range(min(waiting - self._growing, self.max_workers - len(self._workers))):
                self._growing += 1
                worker = self._start_worker()
                worker.ready.add_done_callback(self._grown)
                self._release_when_ready(worker)
        self._arm_growth()  # look again while callers wait

    def _grown(self, _: "asyncio.Future[None]") -> None:  # a worker forked by _grow is ready (or failed)
        self._growing -= 1

    def _release_when_ready(self, worker: Worker) -> None:
        def ready(fut: "asyncio.Future[None]") -> None:
            if not fut.cancelled() and fut.exception() is None:
                self.release(worker)

        worker.ready.add_done_callback(ready)

    def _refill(self) -> None:
        """Fork a worker for callers still waiting, if a slot is free."""
        if not self._closed and self._queue and len(self._workers) < self.max_workers:
            self._release_when_ready(self._start_worker())

    def _fail_waiters(self, error: BaseException) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(error)

    def _on_readable(self, worker: Worker) -> None:
        try:
            data = recv_frame(worker.sock)
        except (EOFError, OSError):
            self._lost(worker, "")
            return
        call = worker.calls.popleft() if worker.calls else None
        self._replies += 1
        if worker.calls:  # the worker starts the next (prefetched) call now
            following = worker.calls[0]
            if not following.started:
                following.started = True
                if following.on_start is not None:
                    following.on_start()
            self.changed()  # room for one more prefetched call
        try:
            reply = cloudpickle.loads(data)
        except BaseException as exc:
            reply = ("err", RuntimeError(f"cannot load the reply of worker {worker.pid}: {exc!r}"), "")
        if call is not None and not call.fut.done():
            call.fut.set_result(reply)
        elif call is not None and not worker.calls:
            self.release(worker)  # a skipped call's reply: nobody holds the worker any more

    def _lost(self, worker: Worker, why: str) -> None:
        """The worker's socket closed: fail its job once its exit code is known, refill the pool."""
        if not worker.alive:
            return
        head = self._take_calls(worker)
        fut = head.fut if head is not None else None
        self._forget(worker)
        zygote = self._zygote
        codes = zygote.exit_code(worker.pid) if zygote is not None else None
        if codes is None or codes.done():
            self._report_lost(worker, fut, why, codes.result() if codes is not None else None)
        else:
            def give_up() -> None:  # the socket closed but the process lingers
                kill_group(worker.pid)
                if zygote is not None:
                    zygote.forget(worker.pid)

            timer = self.loop.call_later(_EXIT_CODE_WAIT, give_up)
            def report(done: "asyncio.Future[int | None]") -> None:
                timer.cancel()
                self._report_lost(worker, fut, why, done.result())

            codes.add_done_callback(report)
        self._refill()

    def _report_lost(self, worker: Worker, fut: asyncio.Future | None, why: str, code: int | None) -> None:
        close_pidfd(worker.pidfd); worker.pidfd = None
        message = (f"worker process {worker.pid} died "
                   f"(exit code {'unknown' if code is None else code}) while running a job")
        if why:
            message += f": {why}"
        if fut is not None:
            logger.trace(message)  # its caller gets the error (a test runner reports it its own way)
            if not fut.done():
                fut.set_exception(crash_error(message, code, worker, worker.output_text()))

    def _forget(self, worker: Worker) -> None:
        self.changed()
        self._take_calls(worker)
        worker.alive = False
        if worker in self._workers:
            self._workers.remove(worker)
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        _stop_reading_and_close(self.loop, worker.sock, reading=worker.reading)
        worker.reading = False
        if not self._closed:  # at shutdown, after the workers exited: their teardowns may still write
            worker.close_outputs(self.loop)


