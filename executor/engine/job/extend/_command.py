"""Run one shell command to completion, blocking or on asyncio, and report its return code.

Both runners start the command through the shell in a new session (its own
process group), send its stdout to ours or to a file, relay its stderr while
keeping the tail for the error message, and when the command's main process
exits, stop whatever it left running in its group: a finished command leaves
no process behind. A non-zero exit raises :class:`CommandFailed`. While it
runs, its group is registered with this process's :mod:`._reaper` watchdog,
which stops it should this process die first.

The blocking runner is a module-level function on a picklable spec, so it runs
the same in a worker thread or a worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import threading
import typing as T
from dataclasses import dataclass, field

from ...._pidfd import open_pidfd
from ..utils import flush_std_streams
from ._reaper import guard, spawning
from ._process_group import (
    TERMINATE_GRACE,
    CommandFailed,
    StderrTail,
    group_alive,
    kill_group_blocking,
    popen_leader_waiter,
    relay_stderr,
    signal_group,
    stop_foreign_group,
)

__all__ = ["CommandSpec", "publish_pgid", "read_pgid", "record_command", "run_command_async", "run_command_blocking"]

#: Seconds given to leftover members of a finished command's group, and to drain its stderr.
LEFTOVER_GRACE = 1.0


@dataclass(frozen=True)
class CommandSpec:
    """Everything needed to run one command, wherever the supervising code runs."""

    cmd: str
    cwd: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    popen_kwargs: dict[str, T.Any] = field(default_factory=dict)
    #: a file to write the process-group id into (lets another process kill the group)
    pgid_path: str | None = None
    #: a file to write the command line into before running it (its folder is created)
    record_path: str | None = None


def record_command(spec: CommandSpec) -> None:
    """Write the command to ``spec.record_path`` (if set), creating its folder.

    Raw ``os`` calls rather than ``makedirs`` + ``open()``: this runs once per
    job, and a text file object costs more than the three system calls.
    """
    if spec.record_path is None:
        return
    folder = os.path.dirname(spec.record_path)
    try:
        os.mkdir(folder)  # the usual case: the engine's jobs folder exists, the job's does not
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    fd = os.open(spec.record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = (spec.cmd + "\n").encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def publish_pgid(path: str, pgid: int) -> None:
    """Write ``pgid`` to ``path`` atomically (a reader never sees a partial number)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(str(pgid))
    os.replace(tmp, path)


def read_pgid(path: str) -> int | None:
    """The process-group id published at ``path``, or None if none was written yet."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


#: Popen streams of the common case: stdout inherited, stderr piped to us (relayed, tail kept)
_DEFAULT_STREAMS = (None, subprocess.PIPE)


def _streams(spec: CommandSpec) -> T.ContextManager[tuple[T.Any, T.Any]]:
    """The stdout/stderr arguments for Popen: inherited stdout, files, or a stderr pipe to relay."""
    if spec.stdout_path is None and spec.stderr_path is None and not spec.popen_kwargs:
        return contextlib.nullcontext(_DEFAULT_STREAMS)  # once per job: no generator, no exit stack
    return _opened_streams(spec)


@contextlib.contextmanager
def _opened_streams(spec: CommandSpec) -> T.Iterator[tuple[T.Any, T.Any]]:
    with contextlib.ExitStack() as stack:
        stdout: T.Any = None
        stderr: T.Any = subprocess.PIPE
        if spec.stdout_path is not None:
            stdout = stack.enter_context(open(spec.stdout_path, "ab"))
        if spec.stderr_path is not None:
            stderr = stdout if spec.stderr_path == spec.stdout_path else stack.enter_context(
                open(spec.stderr_path, "ab"))
        stdout = spec.popen_kwargs.get("stdout", stdout)
        stderr = spec.popen_kwargs.get("stderr", stderr)
        yield stdout, stderr


_devnull: list[int] = []
_devnull_lock = threading.Lock()


def _devnull_fd() -> int:
    """One read-only descriptor of /dev/null for every command's stdin, opened on first use.

    ``stdin=subprocess.DEVNULL`` would open and close /dev/null once per
    command, a few percent of the cost of starting ``true``.
    """
    if not _devnull:
        with _devnull_lock:
            if not _devnull:
                _devnull.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _devnull[0]


def _popen_kwargs(spec: CommandSpec) -> dict[str, T.Any]:
    """The user's Popen arguments besides the streams, with stdin from /dev/null unless given."""
    if not spec.popen_kwargs:
        return {"stdin": _devnull_fd()}  # a job must not read the terminal
    extra = {k: v for k, v in spec.popen_kwargs.items() if k not in ("stdout", "stderr")}
    extra.setdefault("stdin", _devnull_fd())  # a job must not read the terminal
    return extra


class _Started(T.NamedTuple):
    process: subprocess.Popen[bytes]
    #: the read end of the command's stderr pipe (None: its stderr goes elsewhere)
    err_fd: int | None
    #: the group's slot in this process's :class:`~._reaper.GroupGuard`
    guard_slot: int


def _start(spec: CommandSpec) -> _Started:
    """Start the command in a new session, guarded against our own death; and its stderr pipe.

    The pipe is a bare ``os.pipe()``, not ``stderr=PIPE``: Popen would wrap
    its end in a buffered file object that the runners never use, which
    costs a measurable share of starting a command as small as ``true``.
    """
    flush_std_streams()  # what Python printed before the command comes out before what it prints
    groups = guard()
    groups.ready()  # the watchdog runs before the command does: registering it is then instant
    slot, claim_in_child = -1, None
    if spec.pgid_path is not None:
        # in a pool worker, which the engine kills on cancel: the child registers its group itself,
        # before exec, so no instant exists where it runs unguarded (costs the vfork fast path)
        slot, claim_in_child = groups.reserve()
    with _streams(spec) as (stdout, stderr):
        read_fd = write_fd = None
        if stderr is subprocess.PIPE:
            read_fd, write_fd = os.pipe()  # both non-inheritable: Popen dup2s the write end onto fd 2
            stderr = write_fd
        try:
            spawning.claiming = claim_in_child is not None
            process = subprocess.Popen(spec.cmd, shell=True, start_new_session=True, cwd=spec.cwd,
                                       stdout=stdout, stderr=stderr, preexec_fn=claim_in_child,
                                       **_popen_kwargs(spec))
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            groups.remove(slot)
            raise
        finally:
            spawning.claiming = False
            if write_fd is not None:
                os.close(write_fd)  # the child has its copy: EOF comes when the command's side closes
    if claim_in_child is not None:
        groups.fill(slot, process.pid)
        return _Started(process, read_fd, slot)
    return _Started(process, read_fd, groups.add(process.pid))


def _failure(spec: CommandSpec, returncode: int, tail: StderrTail) -> CommandFailed:
    text = tail.text()
    if not text and spec.stderr_path is not None:
        text = StderrTail.of_file(spec.stderr_path)
    return CommandFailed(spec.cmd, returncode, text)


def run_command_blocking(spec: CommandSpec, on_start: T.Callable[[int], None] | None = None) -> int:
    """Run ``spec`` and return 0, or raise :class:`CommandFailed` (blocking; any thread or process)."""
    tail = StderrTail()
    process, err_fd, slot = _start(spec)
    try:
        if spec.pgid_path is not None:
            publish_pgid(spec.pgid_path, process.pid)
        if on_start is not None:
            on_start(process.pid)
        record_command(spec)  # while the command starts: the disk write overlaps with it
        if err_fd is not None:
            _pump_until_exit(process, err_fd, tail)
        returncode = process.wait()
    except BaseException:
        kill_group_blocking(process.pid, popen_leader_waiter(process))
        guard().remove(slot)
        raise
    finally:
        if err_fd is not None:
            os.close(err_fd)
    _stop_leftovers(process.pid)
    guard().remove(slot)
    if returncode != 0:
        raise _failure(spec, returncode, tail)
    return returncode


def _pump_until_exit(process: subprocess.Popen[bytes], pipe_fd: int, tail: StderrTail) -> None:
    """Relay stderr from ``pipe_fd`` until EOF, or until the command exited and its leftovers were stopped."""
    exit_fd = open_pidfd(process.pid)
    # a poll object, not a selector: nothing to create or close per command (an epoll fd would be)
    poller = select.poll()
    poller.register(pipe_fd, select.POLLIN)
    if exit_fd is not None:
        poller.register(exit_fd, select.POLLIN)
    try:
        leader_gone = False
        while True:
            if leader_gone:
                timeout: float | None = LEFTOVER_GRACE * 1000
            elif exit_fd is not None:
                timeout = None
            else:
                timeout = 200  # no pidfd (old kernel): look at the leader now and then
            events = poller.poll(timeout)
            if not events:
                if leader_gone:
                    return  # a process outside the group still holds the pipe: stop listening
                if process.poll() is not None:
                    leader_gone = True
                    _stop_leftovers(process.pid)
                continue
            if len(events) > 1 and events[0][0] != pipe_fd:
                events.reverse()  # the pipe first: a command that has exited closed it too, EOF ends the pump
            for fd, _ in events:
                if fd == pipe_fd:
                    chunk = os.read(pipe_fd, 65536)
                    if not chunk:
                        return
                    tail.feed(chunk)
                    relay_stderr(chunk)
                elif not leader_gone:
                    poller.unregister(fd)
                    leader_gone = True
                    process.wait()
                    _stop_leftovers(process.pid)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _stop_leftovers(pgid: int) -> None:
    """Stop what a finished command left running in its group (usually nothing: one cheap check)."""
    if group_alive(pgid):
        kill_group_blocking(pgid, grace=LEFTOVER_GRACE)


class _LoopWatch:
    """Event-loop readers for one command: its stderr pipe and its exit (a pidfd).

    Nothing is polled and no thread is started: the loop wakes when the
    command writes to stderr or exits. Without pidfd support (old kernels) the
    exit is awaited with a blocking ``wait`` in the loop's default executor.
    """

    def __init__(self, process: subprocess.Popen[bytes], err_fd: int | None, tail: StderrTail) -> None:
        self.loop = asyncio.get_running_loop()
        self.process = process
        self.tail = tail
        self.exited: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._exit_fd = open_pidfd(process.pid)
        if self._exit_fd is not None:
            self.loop.add_reader(self._exit_fd, self._on_exit)
        else:
            waiting = self.loop.run_in_executor(None, process.wait)
            waiting.add_done_callback(lambda _: self._on_exit())
        self._err_fd = err_fd
        if err_fd is not None:
            os.set_blocking(err_fd, False)
            self.loop.add_reader(err_fd, self._on_stderr)
        else:
            self.closed.set_result(None)

    def _on_exit(self) -> None:
        if self._exit_fd is not None:
            self.loop.remove_reader(self._exit_fd)
        self.process.poll()  # reap at once: the pidfd says it has exited
        if not self.exited.done():
            self.exited.set_result(None)

    def _on_stderr(self) -> None:
        assert self._err_fd is not None
        try:
            chunk = os.read(self._err_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.tail.feed(chunk)
            relay_stderr(chunk)
            return
        self.loop.remove_reader(self._err_fd)
        os.close(self._err_fd)
        self._err_fd = None
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Unregister the readers and release the descriptors."""
        if self._err_fd is not None:
            self.loop.remove_reader(self._err_fd)
            os.close(self._err_fd)
            self._err_fd = None
        if self._exit_fd is not None:
            self.loop.remove_reader(self._exit_fd)
            os.close(self._exit_fd)
            self._exit_fd = None


async def run_command_async(spec: CommandSpec) -> int:
    """Run ``spec`` on the running event loop; cancelling the caller kills the command's group."""
    process, err_fd, slot = _start(spec)
    watch = _LoopWatch(process, err_fd, StderrTail())
    try:
        try:
            # Written here, while the command runs: like the output files opened above, the record
            # is part of the start, which a LocalJob does on the loop (a few small system calls).
            # Handing it to a helper thread cost a thread round trip per job, 4x the write itself.
            record_command(spec)
            await asyncio.shield(watch.exited)
        except BaseException:
            await _stop_async(process.pid, watch)
            guard().remove(slot)
            raise
        returncode = process.wait()  # already reaped: returns at once
        if group_alive(process.pid):
            await stop_foreign_group(process.pid, grace=LEFTOVER_GRACE)
        guard().remove(slot)
        if not watch.closed.done():  # usually closed with the exit: skip the timer
            try:
                await asyncio.wait_for(asyncio.shield(watch.closed), LEFTOVER_GRACE)
            except asyncio.TimeoutError:
                pass  # a process that escaped the group still holds stderr open
    finally:
        watch.close()
    if returncode != 0:
        raise _failure(spec, returncode, watch.tail)
    return returncode


async def _stop_async(pgid: int, watch: _LoopWatch, grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM the group, wait for the leader's exit up to ``grace``, then SIGKILL the rest."""
    if signal_group(pgid, signal.SIGTERM):
        try:
            await asyncio.wait_for(asyncio.shield(watch.exited), grace)
        except asyncio.TimeoutError:
            pass
        # members that ignored SIGTERM (or outlived the leader) do not get a second chance
        signal_group(pgid, signal.SIGKILL)
    if not watch.exited.done():
        await watch.exited  # SIGKILL cannot be ignored: the exit comes
    watch.process.wait()
