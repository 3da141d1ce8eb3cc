"""The zygote's engine side: the process that forks a pool's workers (see :mod:`.process`).

:func:`can_fork_zygote` and :func:`fork_zygote` fork one from the engine
process while that is single-threaded (:class:`SpareZygote`); a
:class:`Zygote` adopts it, or starts one with ``python -c``, and turns its
records (forked pid, fork error, exit code) into futures on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import sys
import threading
import time
import typing as T

from ..._forked import ForkedProcess
from ..._kill import kill_pid
from ..job.utils import WorkerCrashedError
from ..log import logger
from ._process_worker import RECORD, forked_zygote_main, load_libc

_BOOT = "from executor.engine.backend._process_worker import zygote_main; zygote_main()"


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
            kill_pid(self.proc.pid)
            self.proc.wait()


def fork_zygote(prepare: T.Callable[[], None] | None = None) -> SpareZygote | None:
    """Fork a zygote from this process (call only when :func:`can_fork_zygote` is True).

    Costs one ``fork`` in the engine (about a millisecond) instead of an
    interpreter start plus imports; the zygote and its workers start with the
    engine's modules already imported.  ``prepare`` runs first in the zygote
    (the zygote ends if it raises).  None if the fork failed.
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
            if prepare is not None:
                prepare()
            forked_zygote_main(child_sock.fileno(), parent_pid)
        finally:
            os._exit(1)
    child_sock.close()
    return SpareZygote(parent_sock, ForkedProcess(pid))


class Zygote:
    """Engine side of the zygote process that forks one pool's workers.

    Adopts a :class:`SpareZygote` forked by the engine if given, else starts
    one with ``python -c``.  Such a zygote ends when the *thread* that started
    it ends (``PR_SET_PDEATHSIG`` is per thread), and its workers with it: the
    thread that runs the pool's loop must outlive the pool.
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

    def fork(self, child_sock: socket.socket, outputs: tuple[int, int] | None = None) -> "asyncio.Future[int]":
        """Ask for a worker serving ``child_sock`` (writing to the fds ``outputs``); the future gets its pid."""
        fut: asyncio.Future[int] = self.loop.create_future()
        if not self.alive:
            fut.set_exception(WorkerCrashedError("the process pool's zygote process is gone"))
            return fut
        try:
            socket.send_fds(self.sock, [b"F"], [child_sock.fileno(), *(outputs or ())])
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
            kill_pid(self.proc.pid)
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
                # retrieved here: its done callback may never run (a loop closed right after
                # a shutdown), and asyncio would then print "exception was never retrieved"
                fut.exception()
        for waiter in self._code_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._code_waiters.clear()


def _stop_reading_and_close(loop: asyncio.AbstractEventLoop, sock: socket.socket, reading: bool = True) -> None:
    """Unregister ``sock`` from the loop's readers (if ``reading``) and close it."""
    if reading:
        try:
            loop.remove_reader(sock.fileno())
        except Exception:  # loop already closed: nothing to unregister
            pass
    sock.close()
