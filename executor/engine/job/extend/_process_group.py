"""Run a shell command in its own process group and stop the whole group.

Every command an extended job starts gets a new session (``setsid``), so its
process-group id is the child's pid and one ``killpg`` reaches everything the
command spawned (the shell, pipelines, grandchildren). This module holds the
blocking and the asyncio flavours of "run and supervise", the group killers
and the small stderr tail kept for error messages.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import IO, Any, Callable, Mapping

import psutil

from ...._kill import signal_group

__all__ = [
    "CommandFailed",
    "RESERVED_POPEN_KWARGS",
    "StderrTail",
    "check_popen_kwargs",
    "group_alive",
    "kill_group_blocking",
    "group_has_live_members",
    "signal_group",
    "stop_foreign_group",
]

#: Popen arguments the job sets itself: overriding them would break group kill or the result.
RESERVED_POPEN_KWARGS = frozenset({"args", "shell", "start_new_session", "process_group", "cwd", "preexec_fn"})
#: Seconds a command gets to exit after SIGTERM before the group is SIGKILLed.
TERMINATE_GRACE = 3.0


class CommandFailed(RuntimeError):
    """A command exited with a non-zero return code; carries the code and the end of its stderr."""

    def __init__(self, cmd: str, returncode: int, stderr_tail: str = "") -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        message = f"command {cmd!r} exited with code {returncode}"
        if returncode < 0:
            message += f" (killed by signal {_signal_name(-returncode)})"
        if stderr_tail:
            message += f"; stderr tail:\n{stderr_tail}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[CommandFailed], tuple[str, int, str]]:
        # process workers send the exception back pickled: keep the fields, not the message
        return (CommandFailed, (self.cmd, self.returncode, self.stderr_tail))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def check_popen_kwargs(popen_kwargs: dict[str, Any] | None, in_worker_process: bool = False) -> dict[str, Any]:
    """Validate user ``popen_kwargs``: a dict without the keys the job controls itself.

    With ``in_worker_process`` (a ProcessJob starts the command) the streams
    cannot be this process's open files or descriptors.
    """
    if popen_kwargs is None:
        return {}
    if not isinstance(popen_kwargs, dict):
        raise TypeError(f"popen_kwargs must be a dict of subprocess.Popen arguments, got {type(popen_kwargs).__name__}")
    unknown = sorted(str(name) for name in popen_kwargs if name not in _popen_parameters())
    if unknown:
        raise TypeError(f"popen_kwargs has unknown subprocess.Popen argument(s) {unknown}; "
                        f"valid ones: {', '.join(sorted(_popen_parameters() - RESERVED_POPEN_KWARGS))}")
    _check_env(popen_kwargs.get("env"))
    reserved = sorted(RESERVED_POPEN_KWARGS.intersection(popen_kwargs))
    if reserved:
        raise ValueError(
            f"popen_kwargs may not set {', '.join(reserved)}: the job runs the command through the shell "
            "in its own process group (use target_dir for the working directory)"
        )
    for name in ("stdin", "stdout"):
        if popen_kwargs.get(name) is subprocess.PIPE:
            raise ValueError(
                f"popen_kwargs[{name!r}] may not be subprocess.PIPE: nothing would "
                f"{'write to' if name == 'stdin' else 'read'} that pipe and the command would block "
                "(use a file, subprocess.DEVNULL, a shell redirection in cmd, or redirect_out_err)")
    if in_worker_process:
        for name in ("stdin", "stdout", "stderr"):
            if _is_our_descriptor(popen_kwargs.get(name)):
                raise ValueError(
                    f"popen_kwargs[{name!r}] is an open file or descriptor of this process, but with "
                    "base_class=ProcessJob the command starts in a worker process that does not have it "
                    "(use base_class=ThreadJob or LocalJob, or a shell redirection in cmd)")
    return dict(popen_kwargs)


@functools.lru_cache(maxsize=None)
def _popen_parameters() -> frozenset[str]:
    return frozenset(inspect.signature(subprocess.Popen).parameters)


def _check_env(env: Any) -> None:
    """An ``env`` must map names to strings: Popen's own error would come at run time, without the name."""
    if env is None:
        return
    if not isinstance(env, Mapping):
        raise TypeError(f"popen_kwargs['env'] must be a dict of environment variables, got {type(env).__name__}")
    for name, value in env.items():
        if not isinstance(name, (str, bytes)) or not isinstance(value, (str, bytes)):
            raise TypeError(f"popen_kwargs['env'][{name!r}] must be a string, got {type(value).__name__}: {value!r} "
                            "(environment variables are strings)")


def _is_our_descriptor(stream: Any) -> bool:
    # subprocess's PIPE, STDOUT and DEVNULL are negative numbers; real descriptors are not
    return hasattr(stream, "fileno") or (isinstance(stream, int) and not isinstance(stream, bool) and stream >= 0)


class StderrTail:
    """Keeps the last bytes of a stream, to quote them when the command fails."""

    def __init__(self, max_bytes: int = 4096, max_lines: int = 15) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._max_bytes = max_bytes
        self._max_lines = max_lines

    def feed(self, chunk: bytes) -> None:
        """Remember ``chunk``, forgetting the oldest bytes beyond the budget."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self._max_bytes:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        """The last lines seen, decoded leniently."""
        data = b"".join(self._chunks)[-self._max_bytes:]
        lines = data.decode(errors="replace").rstrip().splitlines()
        return "\n".join(lines[-self._max_lines:])

    @classmethod
    def of_file(cls, path: str, max_bytes: int = 4096) -> str:
        """The tail of a file the command wrote its stderr into ("" if it does not exist)."""
        tail = cls(max_bytes=max_bytes)
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - max_bytes))
                tail.feed(handle.read())
        except OSError:
            return ""
        return tail.text()


def relay_stderr(chunk: bytes, sink: IO[str] | None = None) -> None:
    """Copy a chunk of the command's stderr to ours (bytes when possible, so nothing is re-encoded)."""
    stream = sink if sink is not None else sys.stderr
    if stream is None:
        return
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is not None:
            stream.flush()
            buffer.write(chunk)
            buffer.flush()
        else:
            stream.write(chunk.decode(errors="replace"))
            stream.flush()
    except (OSError, ValueError):
        # our own stderr is gone (closed pipe): the tail is still kept for the error message
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is still in group ``pgid``."""
    return signal_group(pgid, 0)


def group_has_live_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies waiting to be reaped do not count).

    Scans the process table: meant for the rare "stop a group we are not the
    parent of" path, where a reaped-late zombie must not look alive.
    """
    if not group_alive(pgid):
        return False
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


async def stop_foreign_group(pgid: int, grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM group ``pgid`` (whose leader may be another process's child), SIGKILL it after ``grace``."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    delay = 0.005
    while group_has_live_members(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    signal_group(pgid, signal.SIGKILL)


def kill_group_blocking(pgid: int, leader_exited: Callable[[float], bool] | None = None,
                        grace: float = TERMINATE_GRACE) -> None:
    """SIGTERM the group, give it ``grace`` seconds, then SIGKILL whatever is left.

    ``leader_exited(timeout)`` waits for (and reaps) the group leader when the
    caller is its parent; otherwise the group is watched with ``killpg(0)``.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return
    if leader_exited is not None:
        leader_exited(grace)
    else:
        deadline = time.monotonic() + grace
        delay = 0.005
        while group_has_live_members(pgid) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    # members that ignored SIGTERM (or a leader that trapped it) do not get a second chance
    signal_group(pgid, signal.SIGKILL)
    if leader_exited is not None:
        leader_exited(grace)


def popen_leader_waiter(process: subprocess.Popen[bytes]) -> Callable[[float], bool]:
    """A ``leader_exited`` callback for :func:`kill_group_blocking` that reaps ``process``."""

    def wait(timeout: float) -> bool:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    return wait
