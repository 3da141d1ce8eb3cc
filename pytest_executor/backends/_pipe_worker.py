"""The controller's side of a pipe-connected worker session (used by the ``subprocess`` and ``dask`` backends).

:class:`WorkerProcess` is one worker process and the controller's ends of
its pipes (its channel, its own output, a lifeline); the functions build a
worker's command line from the controller's and describe how a worker ended.
The pool that drives such workers is :class:`pytest_executor.backends._pipe_pool.WorkerPool`.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import sys
import tempfile
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from executor._kill import kill_tree

from pytest_executor.backends._failed_item import exit_reason, read_capture_files, trim_stack_dump
from pytest_executor.backends._protocol import FrameDecoder, encode, write_all
from pytest_executor.backends._runner import ItemTask

@dataclass
class Slot:
    """A task assigned to a worker, from ``run`` until ``done``."""

    task: ItemTask
    started: bool = False
    result: bool = False
    start: float = 0.0


@dataclass
class WorkerProcess:
    """One worker process and the controller's ends of its pipes."""

    wid: str
    proc: Any
    """A ``subprocess.Popen`` (or a look-alike for remote workers: pid, returncode, poll, wait)."""
    write_fd: int
    read_fd: int
    out_fd: int
    lifeline_fd: int
    pidfd: int | None
    oneshot: bool
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    tail: bytearray = field(default_factory=bytearray)
    slots: deque[Slot] = field(default_factory=deque)
    collected: dict[str, Any] | None = None
    ready: bool = False
    closing: bool = False
    exited: bool = False
    channel_open: bool = True
    index_map: list[int] | None = None
    capture_fds: list[int] = field(default_factory=list)
    deadline: float | None = None
    last_module: str | None = None
    timed_out: float | None = None
    fatal: str | None = None
    bye: bool = False
    """The worker finished its run loop; only its session's exit is left."""
    outbox: list[bytes] = field(default_factory=list)
    """Messages sent before a remote worker connected (``write_fd`` still -1)."""
    forked: bool = False
    """Forked from the controller before it configured: waits for the ``setup`` message."""

    out_decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )
    """Decodes the worker's own output for echoing (see ``WorkerPool._take_output``)."""

    load: int = 0
    """Tasks sent whose outcome is not known yet (kept by :meth:`assign`/:meth:`resolve`/:meth:`drop`)."""

    def assign(self, task: ItemTask) -> None:
        """Note that ``task`` was handed to this worker."""
        self.slots.append(Slot(task))
        self.load += 1

    def resolve(self, slot: Slot) -> None:
        """The outcome of ``slot`` is known (its teardown may still be pending)."""
        if not slot.result:
            slot.result = True
            self.load -= 1

    def drop(self, slot: Slot) -> None:
        """``slot`` is finished (or lost): forget it."""
        self.resolve(slot)
        self.slots.remove(slot)

    def send(self, name: str, **kwargs: Any) -> None:
        """Send one message; a dead worker is noticed by its pidfd/EOF, not here."""
        if self.write_fd < 0:
            self.outbox.append(encode(name, kwargs))
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            write_all(self.write_fd, encode(name, kwargs))

    def read_capture(self) -> tuple[str, str]:
        """What the running test wrote to its captured stdout/stderr so far."""
        return read_capture_files(self.capture_fds)

    def tail_text(self, lines: int = 60) -> str:
        """The last ``lines`` lines the worker wrote to its own stdout/stderr, stack dumps trimmed."""
        text = bytes(self.tail).decode("utf-8", "replace")
        return "\n".join(trim_stack_dump(text.rstrip("\n").splitlines())[-lines:])


def kill_process_tree(pid: int) -> None:
    """SIGKILL a worker, its process group and every descendant (see :mod:`executor._kill`)."""
    kill_tree(pid)


def _option_takes_value(config: pytest.Config) -> dict[str, bool]:
    """Map each command-line option string to whether it consumes a value."""
    # No public API lists the options: pytest >= 9 keeps the argparse parser in
    # ``optparser``, older versions build it with ``_getparser()``.
    try:
        internal: Any = config._parser
        parser = getattr(internal, "optparser", None) or internal._getparser()
        actions = parser._option_string_actions
    except Exception:
        return {}
    return {name: action.nargs != 0 for name, action in actions.items()}


def split_invocation_args(config: pytest.Config) -> tuple[list[str], list[str]]:
    """Split the controller's command line into (options, positional file/node args)."""
    takes_value = _option_takes_value(config)
    args = [str(arg) for arg in config.invocation_params.args]
    options: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals.extend(args[i + 1 :])
            break
        if arg.startswith("--"):
            options.append(arg)
            if "=" not in arg and takes_value.get(arg, False) and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif arg.startswith("-") and len(arg) > 1:
            options.append(arg)
            if len(arg) == 2 and takes_value.get(arg, False) and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        else:
            positionals.append(arg)
        i += 1
    return options, positionals


def drop_basetemp(options: list[str]) -> list[str]:
    """Remove the user's ``--basetemp``: each worker gets its own under the controller's."""
    kept: list[str] = []
    skip = False
    for arg in options:
        if skip:
            skip = False
        elif arg == "--basetemp":
            skip = True
        elif not arg.startswith("--basetemp="):
            kept.append(arg)
    return kept


def make_basetemp(config: pytest.Config) -> tuple[Path, str | None]:
    """The controller's basetemp, under which each worker gets its own; and a directory made for want of one
    (the caller removes it)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        with contextlib.suppress(Exception):
            return Path(factory.getbasetemp()), None
    own = tempfile.mkdtemp(prefix="pytest-executor-")
    return Path(own), own


def python_prefix() -> list[str]:
    """How to start a pytest like the controller's (``python -m pytest`` keeps cwd on sys.path)."""
    main = sys.argv[0] if sys.argv else ""
    if main.endswith(os.path.join("pytest", "__main__.py")):
        return [sys.executable, "-m", "pytest"]
    # Like the ``pytest`` console script: the working directory is not importable.
    boot = "import sys; sys.path.pop(0); import pytest; raise SystemExit(pytest.main())"
    return [sys.executable, "-c", boot]


Batches = dict[str, tuple[WorkerProcess, list[tuple[int, int, str, float | None]]]]
"""Tasks handed out in one dispatch round, by worker id: ``(index, windex, nodeid, timeout)`` each."""

def warning_event(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a worker's warning as the ``pytest_warning_recorded`` hook arguments."""
    category: type[Warning] = UserWarning
    module_name, _, qualname = str(kwargs.get("category", "")).partition(":")
    with contextlib.suppress(Exception):
        module = sys.modules.get(module_name) or __import__(module_name, fromlist=["_"])
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    message = warnings.WarningMessage(
        category(kwargs.get("message", "")), category, kwargs.get("filename", ""), kwargs.get("lineno", 0)
    )
    location = kwargs.get("location")
    return {
        "warning_message": message,
        "when": kwargs.get("when", "runtest"),
        "nodeid": kwargs.get("nodeid", ""),
        "location": tuple(location) if location else None,
    }
