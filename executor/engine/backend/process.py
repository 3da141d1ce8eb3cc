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
:data:`GROW_DELAY` late.  Replies of workers and of the zygote are read by the event
loop (``add_reader``): no helper thread.  A cancelled job's worker is killed
(with its process group) and a fresh one is forked in its place; a worker that
dies unexpectedly fails its job with
:class:`~executor.engine.job.utils.WorkerCrashedError`.

Nothing outlives the engine: workers die with the zygote (``PR_SET_PDEATHSIG``
on Linux), and the zygote ends when the engine closes its control socket, or
is killed with the engine's loop thread, or sees EOF when the engine is killed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as T
import weakref

import cloudpickle

from ..._forked import ForkedProcess, open_pidfd
from ..job.utils import WorkerCrashedError
from ..log import logger
from ._process_worker import RECORD, forked_zygote_main, load_libc, recv_frame, send_frame

_BOOT = "from executor.engine.backend._process_worker import zygote_main; zygote_main()"
GROW_DELAY = 0.05
"""Seconds without any finished job, while jobs wait, before the pool forks more workers (beyond one per CPU)."""
_EXIT_CODE_WAIT = 1.0
"""Seconds to wait for the exit code of a worker whose socket closed (it is killed after)."""


class RemoteTraceback(Exception):
    """Carries the worker-side traceback text of a job's exception (as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class Worker:
    """One worker process and the socket to it (``pid`` is known once ``ready`` is done)."""

    def __init__(self, sock: socket.socket, ready: "asyncio.Future[None]") -> None:
        self.sock = sock
        self.ready = ready
        self.pid = 0
        self.pidfd: int | None = None  # lets the engine wait for a process it did not fork
        self.reading = False
        self.waiter: asyncio.Future | None = None
        self.alive = True
        self.known: set[int] = set()  # tokens of the functions this worker has cached


_FOREIGN_THREADS: set[str] = set()
"""Ids of native threads (not Python's) that outlived a wait in :func:`can_fork_zygote`."""


def can_fork_zygote(wait: float = 0.01) -> bool:
    """True when forking this process is safe now: Linux, and a single thread (Python's or native).

    Forking a multi-threaded process can copy locks held by other threads
    (and warns on Python 3.12+); with one thread the copy is consistent.
    A thread that was just joined (an earlier engine's loop thread) may
    still be listed for a few milliseconds: it is waited for, up to
    ``wait`` seconds.  A native thread that outlives that wait (a C library's
    worker thread) is remembered, so later calls answer at once.
    """
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return False
    me = str(threading.get_native_id())
    deadline = time.monotonic() + wait
    while True:
        try:
            others = set(os.listdir("/proc/self/task")) - {me}
        except OSError:  # pragma: no cover - no procfs
            return False
        if not others:
            return True
        if others <= _FOREIGN_THREADS or time.monotonic() > deadline:
            _FOREIGN_THREADS.update(others)
            return False
        time.sleep(0.0002)


class SpareZygote:
    """A zygote forked from the engine process by :meth:`Engine.start`, not yet used by a pool.

    :func:`fork_zygote` makes one; a :class:`ProcessPool` adopts it for its
    first :class:`Zygote`, or :meth:`close` ends it.
    """

    def __init__(self, sock: socket.socket, proc: ForkedProcess) -> None:
        self.sock = sock
        self.proc = proc

    @property
    def alive(self) -> bool:
        """True while the process runs and its control socket is open."""
        return self.sock.fileno() != -1 and self.proc.poll() is None

    def close(self) -> None:
        """End the unused zygote (it has no workers, nothing to let finish) and reap it."""
        self.sock.close()
        if self.proc.poll() is None:
            _kill_pid(self.proc.pid)
            self.proc.wait()


def fork_zygote() -> SpareZygote | None:
    """Fork a zygote from this process (call only when :func:`can_fork_zygote` is True).

    Costs one ``fork`` in the engine (about a millisecond) instead of an
    interpreter start plus imports; the zygote and its workers start with the
    engine's modules already imported.  None if the fork failed.
    """
    load_libc()  # loaded once here rather than in every zygote (its workers use it for prctl)
    parent_sock, child_sock = socket.socketpair()
    for stream in (sys.stdout, sys.stderr):  # no buffered output copied into the child
        try:
            stream.flush()
        except Exception:
            pass
    parent_pid = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        parent_sock.close()
        child_sock.close()
        logger.debug(f"cannot fork a zygote ({exc!r}); the process pool will start one with python -c")
        return None
    if pid == 0:  # pragma: no cover - runs in the child, which ends with os._exit
        try:
            forked_zygote_main(child_sock.fileno(), parent_pid)
        finally:
            os._exit(1)
    child_sock.close()
    return SpareZygote(parent_sock, ForkedProcess(pid))


class Zygote:
    """Engine side of the zygote process that forks one pool's workers.

    Adopts a :class:`SpareZygote` forked by the engine if given, else starts
    one with ``python -c``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, spare: SpareZygote | None = None) -> None:
        self.loop = loop
        self.proc: T.Union[subprocess.Popen[bytes], ForkedProcess]
        if spare is not None:
            parent_sock, self.proc = spare.sock, spare.proc
        else:
            parent_sock, self.proc = self._start_with_python()
        parent_sock.setblocking(False)
        self.sock = parent_sock
        self.alive = True
        self.answered = False  # True once the zygote has answered a fork request
        self._buf = b""
        self._forks: collections.deque[asyncio.Future[int]] = collections.deque()
        self._watched: set[int] = set()  # live workers whose exit code we may be asked for
        self._codes: dict[int, int] = {}
        self._code_waiters: dict[int, asyncio.Future[int | None]] = {}
        loop.add_reader(parent_sock.fileno(), self._on_readable)

    @staticmethod
    def _start_with_python() -> tuple[socket.socket, "subprocess.Popen[bytes]"]:
        parent_sock, child_sock = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child_sock.fileno()), str(os.getpid()), *sys.path],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to the engine, which stops the pool
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        return parent_sock, proc

    @property
    def pid(self) -> int:
        """The zygote's process id."""
        return self.proc.pid

    def fork(self, child_sock: socket.socket) -> "asyncio.Future[int]":
        """Ask for a worker serving ``child_sock``; the future gets its pid."""
        fut: asyncio.Future[int] = self.loop.create_future()
        if not self.alive:
            fut.set_exception(WorkerCrashedError("the process pool's zygote process is gone"))
            return fut
        try:
            socket.send_fds(self.sock, [b"F"], [child_sock.fileno()])
        except OSError as exc:
            fut.set_exception(WorkerCrashedError(f"cannot ask the zygote process for a worker: {exc}"))
            return fut
        self._forks.append(fut)
        return fut

    def exit_code(self, pid: int) -> "asyncio.Future[int | None]":
        """The exit code of worker ``pid`` (None if it cannot be known: the zygote is gone)."""
        fut: asyncio.Future[int | None] = self.loop.create_future()
        if pid in self._codes:
            fut.set_result(self._codes.pop(pid))
        elif not self.alive or pid not in self._watched:
            fut.set_result(None)
        else:
            self._code_waiters[pid] = fut
        return fut

    def forget(self, pid: int) -> None:
        """Stop tracking worker ``pid`` (its exit code is not needed)."""
        self._watched.discard(pid)
        self._codes.pop(pid, None)
        fut = self._code_waiters.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def close(self, timeout: float = 10.0) -> None:
        """Close the control socket and reap the zygote (it first lets its workers exit)."""
        self._gone("the process pool was shut down")
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - the zygote's grace period is 2 s
            _kill_pid(self.proc.pid)
            self.proc.wait()

    # ------------------------------------------------------------ internals
    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            code = self.proc.poll()
            self._gone(f"the process pool's zygote process {self.pid} exited (exit code {code})")
            return
        self._buf += data
        size = RECORD.size
        while len(self._buf) >= size:
            kind, pid, value = RECORD.unpack(self._buf[:size])
            self._buf = self._buf[size:]
            self._on_record(kind, pid, value)

    def _on_record(self, kind: bytes, pid: int, value: int) -> None:
        self.answered = True
        if kind == b"X":
            watched = pid in self._watched
            self._watched.discard(pid)
            fut = self._code_waiters.pop(pid, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(value)
            elif watched:  # kept until the pool asks (its socket EOF may come after this record)
                self._codes[pid] = value
            return
        fork = self._forks.popleft() if self._forks else None
        if kind == b"P":
            self._watched.add(pid)
        if fork is None or fork.done():  # nobody waits for it any more: its socket is closed, it exits
            return
        if kind == b"P":
            fork.set_result(pid)
        else:
            fork.set_exception(WorkerCrashedError(f"the zygote process could not fork a worker: "
                                                  f"{os.strerror(value)}"))

    def _gone(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        _stop_reading_and_close(self.loop, self.sock)
        while self._forks:
            fut = self._forks.popleft()
            if not fut.done():
                fut.set_exception(WorkerCrashedError(why))
        for waiter in self._code_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._code_waiters.clear()


class ProcessPool:
    """A lazily grown pool of at most ``max_workers`` warm worker processes."""

    def __init__(self, max_workers: int, loop: asyncio.AbstractEventLoop,
                 spare: SpareZygote | None = None) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.loop = loop
        self._eager_workers = min(max_workers, os.cpu_count() or 1)
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

    # ------------------------------------------------------------------ API
    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.pid for w in self._workers if w.alive and w.pid]

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
    ) -> T.Any:
        """Run ``func(*args, **kwargs)`` in a worker and return its result (raise its error)."""
        worker = await self.acquire()
        if on_worker is not None:
            on_worker(worker)
        try:
            payload = self._call_payload(worker, func, args, kwargs)
        except BaseException:
            self.release(worker)
            raise
        try:
            reply = await self.request(worker, payload)
            if reply[0] == "missing":  # the worker evicted the function: send it in full
                worker.known.discard(reply[1])
                reply = await self.request(worker, self._call_payload(worker, func, args, kwargs))
        except asyncio.CancelledError:
            self.kill(worker)
            raise
        except BaseException:
            self.discard_if_dead(worker)
            raise
        self.release(worker)
        return _unwrap(reply)

    async def acquire(self) -> Worker:
        """Take an idle worker, fork one if below the limit, else wait for one."""
        self._check_open()
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
        """Give a worker back (to a waiting caller first)."""
        if not worker.alive or self._closed:
            return
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(worker)
                return
        self._idle.append(worker)

    async def request(self, worker: Worker, payload: bytes) -> tuple:
        """Send one request to ``worker`` and await its reply tuple."""
        fut: asyncio.Future[tuple] = self.loop.create_future()
        worker.waiter = fut
        try:
            send_frame(worker.sock, payload)
        except OSError as exc:
            self._lost(worker, f"cannot send to worker: {exc}")
        return await fut

    def kill(self, worker: Worker) -> None:
        """Kill a worker (and its process group) and fork a replacement if the pool is open."""
        if not worker.alive:
            return
        self._forget(worker)
        if worker.pid:
            if self._zygote is not None:
                self._zygote.forget(worker.pid)
            _kill_group(worker.pid)
            if not _wait_gone(worker.pid, worker.pidfd, 5.0):  # pragma: no cover - SIGKILL is not ignorable
                logger.warning(f"worker process {worker.pid} survived SIGKILL for 5 s")
        _close_pidfd(worker)
        if not self._closed:  # keep the pool warm
            self._release_when_ready(self._start_worker())

    def discard_if_dead(self, worker: Worker) -> None:
        """Make sure a worker whose request failed is not reused if it died."""
        if worker.alive and worker.pid and not _pid_running(worker.pid, worker.pidfd):
            self._forget(worker)
            _close_pidfd(worker)

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
        for worker in list(self._workers):
            busy = worker.waiter is not None and not worker.waiter.done()
            self._forget(worker)
            if busy and worker.pid:
                _kill_group(worker.pid)
            _close_pidfd(worker)
        if self._zygote is not None:
            zygote, self._zygote = self._zygote, None
            zygote.close()  # returns once the zygote has reaped every worker
        if self._spare is not None:
            spare, self._spare = self._spare, None
            spare.close()

    # ------------------------------------------------------------ internals
    def _call_payload(self, worker: Worker, func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> bytes:
        """Pickle a call; a function is pickled once per pool and sent once per worker.

        Functions cloudpickled by value (``__main__``, lambdas, closures) are the
        costly part of a tiny job, so they are cached by identity: like a
        forked ``ProcessPoolExecutor``, a worker keeps the function's globals
        as they were when it first received it.
        """
        try:
            entry = self._functions.get(func)
        except TypeError:  # not weak-referenceable / unhashable: no caching
            return cloudpickle.dumps(("call", func, args, kwargs))
        if entry is None:
            entry = (next(self._tokens), cloudpickle.dumps(func))
            try:
                self._functions[func] = entry
            except TypeError:
                return cloudpickle.dumps(("call", func, args, kwargs))
        token, data = entry
        if token in worker.known:
            return cloudpickle.dumps(("callc", token, None, args, kwargs))
        worker.known.add(token)
        return cloudpickle.dumps(("callc", token, data, args, kwargs))

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
        try:
            forked = self._zygote.fork(child_sock)
        finally:
            child_sock.close()  # the zygote got its own copy with the request
        worker = Worker(parent_sock, self.loop.create_future())
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

    def _grown(self, _: "asyncio.Future[None]") -> None:
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
        fut, worker.waiter = worker.waiter, None
        self._replies += 1
        try:
            reply = cloudpickle.loads(data)
        except BaseException as exc:
            reply = ("err", RuntimeError(f"cannot load the reply of worker {worker.pid}: {exc!r}"), "")
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def _lost(self, worker: Worker, why: str) -> None:
        """The worker's socket closed: fail its job once its exit code is known, refill the pool."""
        if not worker.alive:
            return
        self._forget(worker)
        fut, worker.waiter = worker.waiter, None
        zygote = self._zygote
        codes = zygote.exit_code(worker.pid) if zygote is not None else None
        if codes is None or codes.done():
            self._report_lost(worker, fut, why, codes.result() if codes is not None else None)
        else:
            def give_up() -> None:  # the socket closed but the process lingers
                _kill_group(worker.pid)
                if zygote is not None:
                    zygote.forget(worker.pid)

            timer = self.loop.call_later(_EXIT_CODE_WAIT, give_up)
            def report(done: "asyncio.Future[int | None]") -> None:
                timer.cancel()
                self._report_lost(worker, fut, why, done.result())

            codes.add_done_callback(report)
        self._refill()

    def _report_lost(self, worker: Worker, fut: asyncio.Future | None, why: str, code: int | None) -> None:
        _close_pidfd(worker)
        message = (f"worker process {worker.pid} died "
                   f"(exit code {'unknown' if code is None else code}) while running a job")
        if why:
            message += f": {why}"
        if fut is not None:
            logger.warning(message)
            if not fut.done():
                fut.set_exception(WorkerCrashedError(message))

    def _forget(self, worker: Worker) -> None:
        worker.alive = False
        if worker in self._workers:
            self._workers.remove(worker)
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        _stop_reading_and_close(self.loop, worker.sock, reading=worker.reading)
        worker.reading = False


def _stop_reading_and_close(loop: asyncio.AbstractEventLoop, sock: socket.socket, reading: bool = True) -> None:
    """Unregister ``sock`` from the loop's readers (if ``reading``) and close it."""
    if reading:
        try:
            loop.remove_reader(sock.fileno())
        except Exception:  # loop already closed: nothing to unregister
            pass
    sock.close()


def _unwrap(reply: tuple) -> T.Any:
    """Turn a worker reply into a value, or raise the job's exception with its remote traceback."""
    if reply[0] == "err":
        exc = reply[1]
        if reply[2]:
            exc.__cause__ = RemoteTraceback(reply[2])
        raise exc
    return reply[1]


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pid: int) -> None:
    """SIGKILL a worker's whole process group (the worker leads its own group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _kill_pid(pid)


def _close_pidfd(worker: Worker) -> None:
    if worker.pidfd is not None:
        os.close(worker.pidfd)
        worker.pidfd = None


def _pid_running(pid: int, pidfd: int | None) -> bool:
    """True while ``pid`` has not exited (a zombie awaiting the zygote's reaping counts as exited)."""
    if pidfd is not None:
        ready, _, _ = select.select([pidfd], [], [], 0)
        return not ready
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, pidfd: int | None, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False on timeout."""
    if pidfd is not None:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    deadline = time.monotonic() + timeout
    while _pid_running(pid, None):  # no pidfd (not Linux): the zygote reaps within milliseconds
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
