"""The zygote and the worker loop of the process backend (see :mod:`executor.engine.backend.process`).

The engine has one *zygote* per process pool: a single-threaded process that
forks a new worker whenever the engine asks.  It is either forked from the
engine process while that is single-threaded (:func:`forked_zygote_main`), or
started with ``python -c`` (:func:`zygote_main`), importing cloudpickle and
this module and never running the user's ``__main__``.
Forking from a single-threaded process is safe (unlike forking the engine,
whose loop thread exists), and a forked worker is ready in about a
millisecond instead of paying for an interpreter start and its imports.

Kept to the standard library plus cloudpickle, and to modules the interpreter
loads anyway, so the zygote starts fast (``python -X importtime``): the C
``_socket`` module instead of :mod:`socket`, no :mod:`multiprocessing`, no
:mod:`asyncio` unless a job returns a coroutine.

Engine ↔ zygote (one stream socket): the engine sends ``b"F"`` with the
worker's end of a fresh socket pair attached (``SCM_RIGHTS``); the zygote
answers with fixed-size records ``(kind, pid, value)``: ``P`` = forked
``pid``, ``E`` = fork failed with errno ``value``, ``X`` = ``pid`` exited
with code ``value`` (negative: killed by that signal).  EOF on that socket
means the engine is gone: the zygote lets its workers finish exiting, kills
the stragglers and exits.

Engine ↔ worker (one stream socket per worker): length-prefixed cloudpickled
tuples.  Requests: ``("call", func, args, kwargs)``, ``("callc", token,
pickled_func_or_None, args, kwargs)``, ``("gen", func, args, kwargs)``,
``("step", op, value)``; replies: ``("ok", value)``, ``("yield", value)``,
``("return", value)``, ``("missing", token)``, ``("err", exception,
traceback_text)``.
"""

from __future__ import annotations

import _socket
import array
import os
import select
import signal
import struct
import sys
import time
import typing as T

from ..._kill import kill_group, kill_group_terminate_rest, kill_own_descendants
from ..._lifeline import die_with_parent
from ._worker_serve import flush_std_streams


RECORD = struct.Struct("!cii")
"""One zygote → engine record: kind (``P``/``E``/``X``), pid, value."""

_GRACE_SECONDS = 2.0
"""How long a closing zygote lets its workers exit on their own before killing them."""


# ------------------------------------------------------------------- worker
_libc: T.Any = None
"""The C library (ctypes), loaded once by the zygote and inherited by its workers."""


def load_libc() -> T.Any:
    """The C library through ctypes (None where unavailable); cached for forked children."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        except Exception:  # best effort: no prctl then
            _libc = False
    return _libc or None


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (see :mod:`executor._lifeline`)."""
    die_with_parent(sig, load_libc())


def _whole_lines() -> None:
    """Write jobs' output a line at a time, so concurrent workers never splice lines.

    Under ``python -u``/``PYTHONUNBUFFERED`` ``print`` writes its text and its
    newline separately, and two workers sharing a pipe interleave mid-line.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
        except Exception:  # replaced by something that is not a TextIOWrapper
            pass


def serve(sock: T.Any) -> None:
    """Answer requests on the stream socket ``sock`` until the engine closes it (see :mod:`._worker_serve`)."""
    from ._worker_serve import serve as serve_requests

    _whole_lines()
    serve_requests(sock)


def _bind_std_streams() -> None:
    """Point ``sys.stdout``/``sys.stderr`` at fds 1 and 2 if the engine's program had replaced them.

    A zygote forked from a program that swapped them (pytest's capture does)
    would otherwise write the jobs' output into a copy of that replacement.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        try:
            if stream.fileno() == fd:
                continue
        except Exception:
            pass
        setattr(sys, name, open(fd, "w", buffering=1, closefd=False, errors="backslashreplace"))


def _become_subreaper() -> None:
    """:func:`executor._kill.become_subreaper` with the C library the zygote loaded (no ctypes load per worker)."""
    libc = load_libc()
    if libc is not None:
        try:
            libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except Exception:  # best effort: the process group still catches undetached children
            pass


def _has_children() -> bool:
    """Whether this process has children (cheap on Linux: no psutil import when it has none)."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as children:
            return bool(children.read().strip())
    except OSError:
        return True


def _run_worker(fds: list[int], zygote_pid: int) -> T.NoReturn:
    """Body of a freshly forked worker: serve the engine, then exit without returning to the zygote.

    ``fds``: the socket to the engine, then optionally the write ends of its
    stdout and stderr pipes (the engine reads them: crash reports, stack dumps).
    """
    code = 0
    fd = fds[0]
    if len(fds) == 3:
        flush_std_streams()
        os.dup2(fds[1], 1)
        os.dup2(fds[2], 2)
        os.close(fds[1])
        os.close(fds[2])
        _bind_std_streams()
    try:
        os.setpgid(0, 0)  # its own group: cancelling a job kills what the job started too
    except OSError:  # the zygote already did it for us
        pass
    try:
        _die_with_parent()  # the zygote is the parent: it dies with the engine
        _become_subreaper()  # what a job detaches stays in this worker's tree, killed with it
        import faulthandler

        faulthandler.enable()  # a SIGABRT (kill with a stack dump) or a crash writes the stacks to stderr
        if os.getppid() == zygote_pid:  # else the zygote died before prctl took effect
            serve(_socket.socket(fileno=fd))
        _kill_leftovers()  # before atexit: an exit function may end this process for good
        import atexit

        atexit._run_exitfuncs()  # what the job registered, as at a normal interpreter exit
    except BaseException:  # pragma: no cover - serve() reports job errors itself
        code = 1
    finally:
        _kill_leftovers()
        flush_std_streams()
        os._exit(code)


def _kill_leftovers() -> None:
    """Kill what the jobs started and left running (detached ones included: this worker is their subreaper)."""
    try:
        if _has_children():
            kill_own_descendants()
    except BaseException:  # pragma: no cover - best effort on the way out
        pass


# ------------------------------------------------------------------- zygote
def _recv_fork_request(ctrl: T.Any) -> list[int] | None:
    """Read one ``b"F"`` + fds request (the worker's socket, optionally its stdout and stderr); None on EOF."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = ctrl.recvmsg(1, _socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    if data != b"F" or len(fds) not in (1, 3):
        raise RuntimeError(f"bad request to the zygote: {data!r} with {len(fds)} fds")
    return list(fds)


class _Zygote:
    """The zygote's state: its control socket, a self-pipe for SIGCHLD, its live children."""

    def __init__(self, ctrl: T.Any) -> None:
        self.ctrl = ctrl
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler makes the wakeup fd fire

    def fork_worker(self, fds: list[int]) -> bool:
        """Fork a worker serving ``fds[0]`` and report its pid (or the fork error); False if the engine is gone."""
        zygote_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return self._tell(b"E", 0, exc.errno or 0)
        if pid == 0:
            self._become_worker(fds, zygote_pid)
        for fd in fds:
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
        except OSError:
            pass
        self.children.add(pid)
        return self._tell(b"P", pid, 0)

    def _tell(self, kind: bytes, pid: int, value: int) -> bool:
        """Send one record to the engine; False if it is gone."""
        try:
            self.ctrl.sendall(RECORD.pack(kind, pid, value))
        except OSError:
            return False
        return True

    def _become_worker(self, fds: list[int], zygote_pid: int) -> T.NoReturn:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the zygote's parent-death handler is not the job's
        # The zygote ignores Ctrl-C (the terminal's, sent to the engine's group); a worker has a group of its
        # own, and its jobs see SIGINT as in any Python process: KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.ctrl.close()
        _run_worker(fds, zygote_pid)

    def reap(self, report: bool = True) -> None:
        """Collect exited children and tell the engine their exit codes."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            if report:
                report = self._tell(b"X", pid, os.waitstatus_to_exitcode(status))

    def drain_wakeups(self) -> None:
        """Empty the SIGCHLD self-pipe (its bytes only say "look at your children")."""
        try:
            os.read(self.wake_r, 512)
        except BlockingIOError:
            pass

    def serve(self) -> None:
        """Fork workers on request until the engine closes the control socket."""
        while True:
            ready, _, _ = select.select([self.ctrl, self.wake_r], [], [])
            if self.wake_r in ready:
                self.drain_wakeups()
                self.reap()
            if self.ctrl in ready:
                try:
                    fd = _recv_fork_request(self.ctrl)
                except OSError:
                    fd = None
                if fd is None or not self.fork_worker(fd):  # fd: the list of fds
                    return

    def close(self) -> None:
        """The engine closed the control socket: give workers a moment to exit on their own, then kill them."""
        deadline = time.monotonic() + _GRACE_SECONDS
        while self.children and time.monotonic() < deadline:
            self.reap(report=False)
            if self.children:
                select.select([self.wake_r], [], [], max(0.0, deadline - time.monotonic()))
                self.drain_wakeups()
        self.kill_all()

    def kill_all(self, trees: bool = False) -> None:
        """Kill every worker's process group, reap them; ``trees``: also SIGTERM what left the groups.

        (A snapshot of each tree is taken first: a killed worker hands its children on.)
        """
        for pid in list(self.children):
            if trees:
                kill_group_terminate_rest(pid)
            else:
                kill_group(pid)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.children.clear()


def zygote_main() -> None:
    """Entry point: ``python -c '...; zygote_main()' CONTROL_FD PARENT_PID SYS_PATH...``."""
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    extra = [p for p in sys.argv[3:] if p not in sys.path]
    sys.path[:0] = extra
    code = 0
    try:
        run_zygote(fd, parent_pid)
    except BaseException:  # pragma: no cover - nothing to report to: the engine sees EOF
        code = 1
    finally:
        os._exit(code)  # no interpreter teardown: the engine waits for this exit at stop()


class _ParentDied(BaseException):
    """Raised by the zygote's SIGTERM handler: the engine (its parent) died."""


def _on_parent_death(*_: T.Any) -> None:
    raise _ParentDied


def run_zygote(fd: int, parent_pid: int) -> None:
    """Serve fork requests on the control socket ``fd`` until the engine (``parent_pid``) closes it.

    When the engine dies (``kill -9`` included) the kernel sends SIGTERM
    (``PR_SET_PDEATHSIG``, :mod:`executor._lifeline`): the zygote kills every
    worker's process group at once, sends SIGTERM to what left those groups
    (:func:`executor._kill.kill_group_terminate_rest`), and exits.  (Its workers would die with it anyway, by SIGKILL, but what their
    jobs started would be left to init.)
    """
    signal.signal(signal.SIGTERM, _on_parent_death)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's business (inherited by workers)
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the engine died while we started
        return
    import cloudpickle  # noqa: F401  - loaded once here, inherited by every worker

    zygote = _Zygote(_socket.socket(fileno=fd))
    orphaned = False
    try:
        zygote.serve()
        zygote.close()
    except _ParentDied:
        orphaned = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # killing the rest must not be cut short
        zygote.kill_all(trees=orphaned)


def forked_zygote_main(fd: int, parent_pid: int) -> T.NoReturn:
    """Body of a zygote forked from the engine process itself (it never returns to the engine's code).

    The engine forks while it is single-threaded, before its loop thread
    exists, so the copy is consistent.  What the copy inherited and must not
    keep or act on is neutralised first: every file descriptor except stdout,
    stderr and the control socket is pointed at ``/dev/null`` (pipes and
    sockets of the engine's process see EOF when it closes them, and the fd
    numbers stay taken, so a stale object that closes "its" fd cannot close a
    worker's socket); stdin is ``/dev/null``; the program's Python signal
    handlers, ``atexit`` functions and pending garbage are dropped
    (``gc.freeze``: inherited objects are never collected, so never finalised).
    """
    code = 0
    try:
        os.setsid()  # Ctrl-C goes to the engine, which stops the pool
        _neutralise_inherited_fds(keep=fd)
        _reset_signal_handlers()
        import atexit
        import gc

        atexit._clear()
        gc.freeze()
        run_zygote(fd, parent_pid)
    except BaseException:  # pragma: no cover - nothing to report to: the engine sees EOF
        code = 1
    finally:
        os._exit(code)


def _neutralise_inherited_fds(keep: int) -> None:
    """Point every inherited fd but 1, 2 and ``keep`` at /dev/null (0 included)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - Linux only path
        fds = list(range(3, 256))
    null = os.open(os.devnull, os.O_RDWR)
    for target in fds:
        if target in (0, 1, 2, keep, null):
            continue
        try:
            os.dup2(null, target, inheritable=False)
        except OSError:  # not open (the listing's own fd), or a bad number
            pass
    os.dup2(null, 0)  # inheritable: commands a job starts get it as stdin
    os.close(null)


def _reset_signal_handlers() -> None:
    """Restore default handling of signals the engine's program handled in Python."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        try:
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
