"""Run one shell command to completion, blocking or on asyncio, and report its return code.

Both runners start the command through the shell in a new session (its own
process group), send its stdout to ours or to a file, relay its stderr while
keeping the tail for the error message, and when the command's main process
exits, stop whatever it left running in its group: a finished command leaves
no process behind. A non-zero exit raises :class:`CommandFailed`.

The blocking runner is a module-level function on a picklable spec, so it runs
the same in a worker thread or a worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import typing as T
from dataclasses import dataclass, field

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

__all__ = ["CommandSpec", "publish_pgid", "read_pgid", "run_command_async", "run_command_blocking"]

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


@contextlib.contextmanager
def _streams(spec: CommandSpec) -> T.Iterator[tuple[T.Any, T.Any]]:
    """The stdout/stderr arguments for Popen: inherited stdout, files, or a stderr pipe to relay."""
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


def _extra_kwargs(spec: CommandSpec) -> dict[str, T.Any]:
    return {k: v for k, v in spec.popen_kwargs.items() if k not in ("stdout", "stderr")}


def _failure(spec: CommandSpec, returncode: int, tail: StderrTail) -> CommandFailed:
    text = tail.text()
    if not text and spec.stderr_path is not None:
        text = StderrTail.of_file(spec.stderr_path)
    return CommandFailed(spec.cmd, returncode, text)


def _flush_our_streams() -> None:
    # what Python printed before the command must come out before what the command prints
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def run_command_blocking(spec: CommandSpec, on_start: T.Callable[[int], None] | None = None) -> int:
    """Run ``spec`` and return 0, or raise :class:`CommandFailed` (blocking; any thread or process)."""
    _flush_our_streams()
    tail = StderrTail()
    with _streams(spec) as (stdout, stderr):
        process = subprocess.Popen(spec.cmd, shell=True, start_new_session=True, cwd=spec.cwd,
                                   stdout=stdout, stderr=stderr, **_extra_kwargs(spec))
        try:
            if spec.pgid_path is not None:
                publish_pgid(spec.pgid_path, process.pid)
            if on_start is not None:
                on_start(process.pid)
            if process.stderr is not None:
                _pump_until_exit(process, tail)
            returncode = process.wait()
        except BaseException:
            kill_group_blocking(process.pid, popen_leader_waiter(process))
            raise
        finally:
            if process.stderr is not None:
                process.stderr.close()
    if group_alive(process.pid):
        kill_group_blocking(process.pid, grace=LEFTOVER_GRACE)
    if returncode != 0:
        raise _failure(spec, returncode, tail)
    return returncode


def _pump_until_exit(process: subprocess.Popen[bytes], tail: StderrTail) -> None:
    """Relay stderr until EOF, or until the command exited and its leftovers were stopped."""
    assert process.stderr is not None
    pipe = process.stderr
    exit_fd = _pidfd(process.pid)
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ, "pipe")
        if exit_fd is not None:
            selector.register(exit_fd, selectors.EVENT_READ, "exit")
        try:
            leader_gone = False
            while True:
                if leader_gone:
                    timeout: float | None = LEFTOVER_GRACE
                elif exit_fd is not None:
                    timeout = None
                else:
                    timeout = 0.2  # no pidfd (old kernel): look at the leader now and then
                events = selector.select(timeout)
                if not events:
                    if leader_gone:
                        return  # a process outside the group still holds the pipe: stop listening
                    if process.poll() is not None:
                        leader_gone = True
                        kill_group_blocking(process.pid, grace=LEFTOVER_GRACE)
                    continue
                for key, _ in events:
                    if key.data == "exit":
                        selector.unregister(key.fileobj)
                        leader_gone = True
                        process.wait()
                        kill_group_blocking(process.pid, grace=LEFTOVER_GRACE)
                        continue
                    chunk = os.read(pipe.fileno(), 65536)
                    if not chunk:
                        return
                    tail.feed(chunk)
                    relay_stderr(chunk)
        finally:
            if exit_fd is not None:
                os.close(exit_fd)


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Relays the command's stderr and reports its exit without waiting for the pipes to close."""

    def __init__(self, tail: StderrTail) -> None:
        loop = asyncio.get_running_loop()
        self.tail = tail
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tail.feed(data)
        relay_stderr(data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def run_command_async(spec: CommandSpec) -> int:
    """Run ``spec`` on the running event loop; cancelling the caller kills the command's group."""
    _flush_our_streams()
    loop = asyncio.get_running_loop()
    protocol = _CommandProtocol(StderrTail())
    with _streams(spec) as (stdout, stderr):
        transport, _ = await loop.subprocess_shell(
            lambda: protocol, spec.cmd, start_new_session=True, cwd=spec.cwd,
            stdin=spec.popen_kwargs.get("stdin", subprocess.DEVNULL), stdout=stdout, stderr=stderr,
            **{k: v for k, v in _extra_kwargs(spec).items() if k != "stdin"})
    pgid = transport.get_pid()
    try:
        try:
            await asyncio.shield(protocol.exited)
        except BaseException:
            await _stop_async(pgid, protocol)
            raise
        returncode = transport.get_returncode()
        assert returncode is not None
        if group_alive(pgid):
            await stop_foreign_group(pgid, grace=LEFTOVER_GRACE)
        try:
            await asyncio.wait_for(asyncio.shield(protocol.closed), LEFTOVER_GRACE)
        except asyncio.TimeoutError:
            pass  # a process that escaped the group still holds stderr open
    finally:
        transport.close()
    if returncode != 0:
        raise _failure(spec, returncode, protocol.tail)
    return returncode


async def _stop_async(pgid: int, protocol: _CommandProtocol, grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM the group, wait for the leader's exit up to ``grace``, then SIGKILL the rest."""
    if signal_group(pgid, signal.SIGTERM):
        try:
            await asyncio.wait_for(asyncio.shield(protocol.exited), grace)
        except asyncio.TimeoutError:
            pass
        # members that ignored SIGTERM (or outlived the leader) do not get a second chance
        signal_group(pgid, signal.SIGKILL)
