"""The process backend: a warm pool of worker processes owned by one engine.

Workers are plain ``python -c`` subprocesses running
:mod:`executor.engine.backend._process_worker`, each talking to the engine over
one socket with cloudpickled messages.  Why not ``multiprocessing``: ``fork``
is unsafe once the engine's loop thread exists (and warns on Python 3.12+),
while ``spawn``/``forkserver`` re-run the user's ``__main__`` script in every
child, which breaks scripts without an ``if __name__ == "__main__"`` guard.
cloudpickle sends ``__main__`` functions and lambdas by value, so workers never
need the main script.

The pool grows lazily up to ``max_workers`` and keeps its workers for the
engine's life.  Replies are read by the event loop (``add_reader``): no helper
thread.  A cancelled job's worker is killed (with its process group) and a
fresh one is started in its place; a worker that dies unexpectedly fails its
job with :class:`~executor.engine.job.utils.WorkerCrashedError`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import signal
import socket
import subprocess
import sys
import typing as T
import weakref
from multiprocessing.connection import Connection

import cloudpickle

from ..job.utils import WorkerCrashedError
from ..log import logger

_BOOT = "from executor.engine.backend._process_worker import main; main()"


class RemoteTraceback(Exception):
    """Carries the worker-side traceback text of a job's exception (as its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class Worker:
    """One worker process and the socket to it."""

    def __init__(self, proc: subprocess.Popen, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.waiter: asyncio.Future | None = None
        self.alive = True
        self.known: set[int] = set()  # tokens of the functions this worker has cached

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid


class ProcessPool:
    """A lazily grown pool of at most ``max_workers`` warm worker processes."""

    def __init__(self, max_workers: int, loop: asyncio.AbstractEventLoop) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.loop = loop
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
        return [w.pid for w in self._workers if w.alive]

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
        """Take an idle worker, start one if below the limit, else wait for one."""
        self._check_open()
        while self._idle:
            worker = self._idle.popleft()
            if worker.alive:
                return worker
        if len(self._workers) < self.max_workers:
            return self._spawn()
        fut: asyncio.Future[Worker] = self.loop.create_future()
        self._queue.append(fut)
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
            worker.conn.send_bytes(payload)
        except OSError as exc:
            self._lost(worker, f"cannot send to worker: {exc}")
        return await fut

    def kill(self, worker: Worker) -> None:
        """Kill a worker (and its process group) and start a replacement if the pool is open."""
        if not worker.alive:
            return
        self._forget(worker)
        _kill_group(worker.proc)
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            logger.warning(f"worker process {worker.pid} survived SIGKILL for 5 s")
        if not self._closed:  # keep the pool warm
            self.release(self._spawn())

    def discard_if_dead(self, worker: Worker) -> None:
        """Make sure a worker whose request failed is not reused if it died."""
        if worker.alive and worker.proc.poll() is not None:
            self._forget(worker)

    def shutdown(self) -> None:
        """Stop every worker: idle ones exit on EOF, busy ones are killed; reap them all."""
        self._closed = True
        for fut in self._queue:
            if not fut.done():
                fut.cancel()
        self._queue.clear()
        workers = list(self._workers)
        for worker in workers:
            busy = worker.waiter is not None and not worker.waiter.done()
            self._forget(worker)
            if busy:
                _kill_group(worker.proc)
        for worker in workers:
            try:
                worker.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _kill_group(worker.proc)
                worker.proc.wait()

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

    def _spawn(self) -> Worker:
        parent_sock, child_sock = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child_sock.fileno()), str(os.getpid()), *sys.path],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to the engine, which kills the group
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        worker = Worker(proc, conn)
        self._workers.append(worker)
        self.loop.add_reader(conn.fileno(), self._on_readable, worker)
        return worker

    def _on_readable(self, worker: Worker) -> None:
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._lost(worker, "")
            return
        fut, worker.waiter = worker.waiter, None
        try:
            reply = cloudpickle.loads(data)
        except BaseException as exc:
            reply = ("err", RuntimeError(f"cannot load the reply of worker {worker.pid}: {exc!r}"), "")
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def _lost(self, worker: Worker, why: str) -> None:
        if not worker.alive:
            return
        self._forget(worker)
        try:
            code = worker.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            _kill_group(worker.proc)
            code = worker.proc.wait()
        fut, worker.waiter = worker.waiter, None
        message = f"worker process {worker.pid} died (exit code {code}) while running a job"
        if why:
            message += f": {why}"
        logger.warning(message)
        if fut is not None and not fut.done():
            fut.set_exception(WorkerCrashedError(message))
        if not self._closed and self._queue:
            self.release(self._spawn())

    def _forget(self, worker: Worker) -> None:
        worker.alive = False
        if worker in self._workers:
            self._workers.remove(worker)
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        try:
            self.loop.remove_reader(worker.conn.fileno())
        except Exception:  # loop already closed: nothing to unregister
            pass
        worker.conn.close()


def _unwrap(reply: tuple) -> T.Any:
    """Turn a worker reply into a value, or raise the job's exception with its remote traceback."""
    if reply[0] == "err":
        exc = reply[1]
        if reply[2]:
            exc.__cause__ = RemoteTraceback(reply[2])
        raise exc
    return reply[1]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a worker's whole process group (it runs in its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
