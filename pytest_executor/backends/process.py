"""The ``process`` backend: a pool of warm worker processes, each a pytest session.

:class:`ProcessRunner` starts ``--executor-workers`` worker processes as soon as
it is started (at ``pytest_sessionstart``, so the workers collect while the
controller does; where possible they are even forked from the controller
before it loads its conftests, see :meth:`ProcessRunner.prefork`), checks each worker's collection against the
controller's, hands out the tasks the controller submits and turns the
workers' messages into the events of :mod:`pytest_executor.backends._runner`.

How it stays fast: tasks are prefetched (a worker holds a few queued items,
more when items are short), events travel in batches, reports are pickled
serializable dicts, and the controller blocks on the pipes (``selectors``) and
on pidfds for process exits: no polling.

How it stays reliable: every worker runs in its own process group and watches
a lifeline pipe (it kills its group when the controller dies); a worker that
dies turns the item it was running into a failed report with its output and
exit status and is replaced; a timeout sends SIGABRT (faulthandler dumps the
stack into the worker's output pipe) then kills the group; :meth:`kill` reaps
every child and grandchild.

The pool machinery lives in :class:`WorkerPool`; :mod:`pytest_executor.backends.subproc`
reuses it with one-shot workers.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, final

import pytest

from executor._forked import ForkedProcess
from executor._kill import kill_tree, signal_group
from executor._pidfd import open_pidfd

from pytest_executor.config._parse import usable_cpu_count
from pytest_executor.backends._protocol import (
    ENV_CHANNEL,
    ENV_FORKED,
    ENV_LIFELINE,
    ENV_ONESHOT,
    ENV_WORKER,
    FrameDecoder,
    encode,
    fd_channel_spec,
    read_available,
    write_all,
)
from pytest_executor.backends._runner import Event, ItemTask

_TAIL_BYTES = 64 * 1024
_CAPTURE_BYTES = 64 * 1024
_ABORT_GRACE = 2.0
"""Seconds a timed-out worker gets to dump its stack after SIGABRT."""
_MAX_START_FAILURES = 3
_WORKER_PLUGIN = "pytest_executor.backends.worker"


@dataclass
class _Slot:
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
    slots: deque[_Slot] = field(default_factory=deque)
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
        self.slots.append(_Slot(task))
        self.load += 1

    def resolve(self, slot: _Slot) -> None:
        """The outcome of ``slot`` is known (its teardown may still be pending)."""
        if not slot.result:
            slot.result = True
            self.load -= 1

    def drop(self, slot: _Slot) -> None:
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
        texts = []
        for fd in self.capture_fds[:2]:
            try:
                size = os.fstat(fd).st_size
                start = max(0, size - _CAPTURE_BYTES)
                texts.append(os.pread(fd, size - start, start).decode("utf-8", "replace"))
            except OSError:
                texts.append("")
        texts += [""] * (2 - len(texts))
        return texts[0], texts[1]

    def tail_text(self, lines: int = 60) -> str:
        """The last ``lines`` lines the worker wrote to its own stdout/stderr, stack dumps trimmed."""
        text = bytes(self.tail).decode("utf-8", "replace")
        return "\n".join(trim_stack_dump(text.rstrip("\n").splitlines())[-lines:])


_MACHINERY = tuple(os.sep + name + os.sep for name in ("pluggy", "_pytest", "pytest", "pytest_executor")) + (
    '"<string>"',
    '"<frozen runpy>"',
)


def trim_stack_dump(lines: list[str]) -> list[str]:
    """Drop pytest/pluggy/worker frames and our lifeline thread from a faulthandler dump."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            blocks.append([])
        blocks[-1].append(line)
    kept: list[str] = []
    for number, block in enumerate(blocks):
        if number and any("in wait_for_eof" in line for line in block):
            continue
        kept += [line for line in block if not (line.startswith("  File ") and any(p in line for p in _MACHINERY))]
    return kept


def exit_reason(returncode: int | None) -> str:
    """Describe how a process ended: ``exit code 3`` or ``killed by signal SIGSEGV``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


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


def _drop_basetemp(options: list[str]) -> list[str]:
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


def python_prefix() -> list[str]:
    """How to start a pytest like the controller's (``python -m pytest`` keeps cwd on sys.path)."""
    main = sys.argv[0] if sys.argv else ""
    if main.endswith(os.path.join("pytest", "__main__.py")):
        return [sys.executable, "-m", "pytest"]
    # Like the ``pytest`` console script: the working directory is not importable.
    boot = "import sys; sys.path.pop(0); import pytest; raise SystemExit(pytest.main())"
    return [sys.executable, "-c", boot]


def read_workers_option(config: pytest.Config, get: Callable[[pytest.Config, str], Any] | None = None) -> int:
    """``--executor-workers N|auto`` (default: the core count), capped by ``--executor-max-jobs``.

    Values are read (and validated, with an error naming the option) through
    :mod:`pytest_executor.config.options`, which owns them, or through ``get``.
    """
    from pytest_executor.config.options import check_workers_cap, get_option

    get = get or get_option
    count = get(config, "workers") or usable_cpu_count()
    check_workers_cap(int(count), get(config, "workers-max"))  # before a single fork
    max_jobs = get(config, "max-jobs")
    return max(1, min(int(count), int(max_jobs)) if max_jobs else int(count))


Batches = dict[str, tuple[WorkerProcess, list[tuple[int, int, str, float | None]]]]
"""Tasks handed out in one dispatch round, by worker id: ``(index, windex, nodeid, timeout)`` each."""


class WorkerPool:
    """Processes running :mod:`pytest_executor.backends.worker` sessions, driven through selectors.

    Subclasses decide how many workers exist and which gets a task
    (:meth:`_dispatch`) and how much more work is accepted (:meth:`free_slots`).
    """

    name = "pool"
    oneshot = False
    worker_prefix = "w"
    release_on_bye = True
    """Report ``finished`` once every worker said ``bye``, reaping the processes at cleanup."""
    defers_teardown = True
    """A worker tears an item down when it learns its next task (see :class:`~pytest_executor.backends._runner.Runner`)."""
    _REAP_GRACE = 30.0
    worker_env: dict[str, str] = {}
    """Extra environment of every worker (the ``forked`` backend turns on item forking with it)."""
    deadline_grace = 0.0
    """Seconds past an item's timeout before its worker is killed (a forked worker times out its child itself)."""
    """Seconds a worker that said ``bye`` gets to end its session at cleanup before SIGKILL."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._session: pytest.Session | None = None
        self._selector = selectors.DefaultSelector()
        self._pool: list[WorkerProcess] = []
        self._backlog: deque[ItemTask] = deque()
        self._events: list[Event] = []
        self._controller_ids: list[str] | None = None
        self._spawned = 0
        self._start_failures = 0
        self._finishing = False
        self._finished = False
        self._killed = False
        self._mean_duration: float | None = None
        self._cleanup_registered = False
        self._basetemp: Path | None = None
        self._own_basetemp: str | None = None
        self._options: list[str] = []
        self._positionals: list[str] = []
        self._forward_output = False
        """Echo the workers' own output (``-s``/``tee-sys``); read at :meth:`start`, once options are parsed."""

    # -- Runner protocol --------------------------------------------------

    def start(self, session: pytest.Session) -> None:
        """Start the workers now; they collect while the controller does (idempotent)."""
        if self._session is not None:
            return
        self._session = session
        self._forward_output = self.config.getoption("capture", default="fd") in ("no", "tee-sys")
        options, self._positionals = split_invocation_args(self.config)
        self._options = _drop_basetemp(options)
        self._basetemp = self._make_basetemp()
        self._watch_for_cleanup()
        for worker in self._pool:
            if worker.forked:
                worker.send("setup", basetemp=str(self._basetemp / ("executor-" + worker.wid)))
        self._start_workers()

    def free_slots(self) -> int:
        """How many more tasks to accept now (subclasses refine)."""
        raise NotImplementedError

    def submit(self, task: ItemTask) -> None:
        """Queue ``task``; it is sent to a worker as soon as one can take it."""
        self._learn_controller_ids()
        self._backlog.append(task)
        self._dispatch()

    def next_events(self, timeout: float | None) -> list[Event]:
        """Wait up to ``timeout`` seconds for worker events, return all that are ready."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._events:
            if self._killed or self._finished:
                return [("finished", {})]
            wait = self._wait_time(end)
            for key, _ in self._selector.select(wait):
                kind, worker = key.data
                self._on_readable(kind, worker)
            self._check_deadlines()
            self._dispatch()
            self._check_finished()
            if end is not None and time.monotonic() >= end:
                break
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """No more tasks: workers tear down what is left and exit."""
        self._learn_controller_ids()
        self._finishing = True
        self._dispatch()
        self._shutdown_idle()
        self._check_finished()

    def close(self) -> None:
        """Config cleanup: let workers that said ``bye`` end their sessions, then kill what is left."""
        if self._killed:
            return
        deadline = time.monotonic() + self._REAP_GRACE
        for worker in list(self._pool):
            if worker.bye:
                with contextlib.suppress(Exception):
                    worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """Kill every worker process (and their children) now."""
        if self._killed:
            return
        self._killed = True
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        self._cleanup_basetemp()
        with contextlib.suppress(Exception):
            self._selector.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.kill)

    def _watch_for_cleanup(self) -> None:
        """Make sure the workers are reaped at config cleanup (or exit), once."""
        if not self._cleanup_registered:
            self._cleanup_registered = True
            self.config.add_cleanup(self.close)
            atexit.register(self.kill)

    # -- spawning ---------------------------------------------------------

    def _start_workers(self) -> None:
        raise NotImplementedError

    def _make_basetemp(self) -> Path:
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            with contextlib.suppress(Exception):
                return Path(factory.getbasetemp())
        self._own_basetemp = tempfile.mkdtemp(prefix="pytest-executor-")
        return Path(self._own_basetemp)

    def _cleanup_basetemp(self) -> None:
        if self._own_basetemp is not None:
            import shutil

            shutil.rmtree(self._own_basetemp, ignore_errors=True)
            self._own_basetemp = None

    def _worker_argv(self, wid: str, task: ItemTask | None) -> list[str]:
        assert self._basetemp is not None
        options = ["-p", _WORKER_PLUGIN, f"--basetemp={self._basetemp / ('executor-' + wid)}"]
        if task is None:
            return [*python_prefix(), *options, *self._options, *self._positionals]
        return [*python_prefix(), *options, *self._options, self._node_arg(task.nodeid)]

    def _node_arg(self, nodeid: str) -> str:
        """An absolute path form of ``nodeid`` (node ids are relative to the rootdir)."""
        path, sep, rest = nodeid.partition("::")
        return str(self.config.rootpath / path) + sep + rest

    def _spawn(self, task: ItemTask | None = None) -> WorkerProcess:
        wid = f"{self.worker_prefix}{self._spawned}"
        self._spawned += 1
        c2w_r, c2w_w = os.pipe()
        w2c_r, w2c_w = os.pipe()
        life_r, life_w = os.pipe()
        out_r, out_w = os.pipe()
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update({ENV_WORKER: wid, ENV_CHANNEL: fd_channel_spec(c2w_r, w2c_w), ENV_LIFELINE: str(life_r)}, **self.worker_env)
        if self.oneshot:
            env[ENV_ONESHOT] = "1"
        try:
            proc = subprocess.Popen(
                self._worker_argv(wid, task),
                cwd=str(self.config.invocation_params.dir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=subprocess.STDOUT,
                pass_fds=(c2w_r, w2c_w, life_r),
                start_new_session=True,
            )
        except BaseException:
            for fd in (c2w_r, c2w_w, w2c_r, w2c_w, life_r, life_w, out_r, out_w):
                os.close(fd)
            raise
        for fd in (c2w_r, w2c_w, life_r, out_w):
            os.close(fd)
        return self._adopt(wid, proc, c2w_w, w2c_r, out_r, life_w)

    def _adopt(self, wid: str, proc: Any, write_fd: int, read_fd: int, out_fd: int, lifeline_fd: int) -> WorkerProcess:
        """Watch a started worker process through the controller's ends of its pipes."""
        os.set_blocking(read_fd, False)
        os.set_blocking(out_fd, False)
        pidfd = open_pidfd(proc.pid)
        worker = WorkerProcess(wid, proc, write_fd, read_fd, out_fd, lifeline_fd, pidfd, self.oneshot)
        self._selector.register(read_fd, selectors.EVENT_READ, ("chan", worker))
        self._selector.register(out_fd, selectors.EVENT_READ, ("out", worker))
        if pidfd is not None:
            self._selector.register(pidfd, selectors.EVENT_READ, ("exit", worker))
        self._pool.append(worker)
        return worker

    # -- reading ----------------------------------------------------------

    def _wait_time(self, end: float | None) -> float | None:
        now = time.monotonic()
        waits = [] if end is None else [max(0.0, end - now)]
        waits += [max(0.0, w.deadline - now) for w in self._pool if w.deadline is not None]
        if any(w.pidfd is None for w in self._pool):
            waits.append(0.2)  # no pidfd on this platform: notice exits by polling
        return min(waits) if waits else None

    def _on_readable(self, kind: str, worker: WorkerProcess) -> None:
        if worker.exited:
            return
        if kind == "out":
            self._read_output(worker)
        elif kind == "chan":
            self._read_channel(worker)
            if not worker.channel_open and worker.pidfd is None:
                self._reap(worker)
        else:
            self._reap(worker)

    def _read_output(self, worker: WorkerProcess) -> None:
        for data in read_available(worker.out_fd):
            if not data:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(worker.out_fd)
                return
            self._take_output(worker, data)

    def _take_output(self, worker: WorkerProcess, data: bytes) -> None:
        """Keep the tail of a worker's own output; echo it under ``-s``/``--capture=tee-sys``."""
        worker.tail += data
        if len(worker.tail) > _TAIL_BYTES:
            del worker.tail[: len(worker.tail) - _TAIL_BYTES]
        if self._forward_output:
            # Incremental: a character split between two reads is decoded whole.
            sys.stdout.write(worker.out_decoder.decode(data))
            sys.stdout.flush()

    def _read_channel(self, worker: WorkerProcess) -> None:
        if not worker.channel_open:
            return
        for data in read_available(worker.read_fd):
            if not data:
                worker.channel_open = False
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(worker.read_fd)
                return
            for name, kwargs in worker.decoder.feed(data):
                self._on_message(worker, name, kwargs)
            if not worker.channel_open:  # a message closed it
                return

    def _reap(self, worker: WorkerProcess) -> None:
        """The worker process ended: collect its last words, then account for its tasks."""
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill(worker)
        self._read_channel(worker)
        self._read_output(worker)
        self._on_exit(worker)

    # -- messages ---------------------------------------------------------

    def _on_message(self, worker: WorkerProcess, name: str, kwargs: dict[str, Any]) -> None:
        if name == "events":
            for event_name, event_kwargs in kwargs["items"]:
                self._on_event(worker, event_name, event_kwargs)
        elif name == "collected":
            worker.collected = kwargs
            self._open_capture_files(worker, kwargs.get("pid"), kwargs.get("capture_fds", []))
            self._verify(worker)
        elif name == "fatal":
            worker.fatal = str(kwargs.get("message", ""))
        elif name == "bye":
            worker.bye = True

    def _open_capture_files(self, worker: WorkerProcess, pid: Any, fds: list[int]) -> None:
        """Hold the worker's capture files open so a crashed test's output survives it (Linux)."""
        for fd in fds:
            try:
                worker.capture_fds.append(os.open(f"/proc/{int(pid)}/fd/{int(fd)}", os.O_RDONLY))
            except (OSError, TypeError, ValueError):
                return

    def _learn_controller_ids(self) -> None:
        if self._controller_ids is None and self._session is not None:
            self._controller_ids = [item.nodeid for item in self._session.items]
            for worker in self._pool:
                if worker.collected is not None and not worker.ready:
                    self._verify(worker)

    def _verify(self, worker: WorkerProcess) -> None:
        """Check a worker collected what the controller did; map indices when orders differ."""
        if worker.ready or worker.collected is None:
            return
        self._start_failures = 0
        if self.oneshot:
            worker.ready = True
            return
        if self._controller_ids is None:
            return
        ids: list[str] = list(worker.collected.get("ids", []))
        if ids == self._controller_ids:
            worker.ready = True
            return
        known = ids + list(worker.collected.get("deselected", []))
        position = {nodeid: i for i, nodeid in enumerate(known)}
        for i, nodeid in enumerate(self._controller_ids):
            if nodeid not in position:
                theirs = ids[i] if i < len(ids) else "<nothing>"
                self._fail(
                    f"collection mismatch: worker {worker.wid} did not collect what the controller did; "
                    f"first differing id at position {i}: controller has {nodeid!r}, worker has {theirs!r} "
                    f"(controller collected {len(self._controller_ids)} items, worker {len(ids)})"
                )
                return
        worker.index_map = [position[nodeid] for nodeid in self._controller_ids]
        worker.ready = True

    def _slot(self, worker: WorkerProcess, index: int) -> _Slot | None:
        for slot in worker.slots:
            if slot.task.index == index:
                return slot
        return None

    def _on_event(self, worker: WorkerProcess, name: str, kwargs: dict[str, Any]) -> None:
        wid = worker.wid
        if name == "logstart":
            slot = next((s for s in worker.slots if not s.started), None)
            if slot is not None:
                slot.started = True
                slot.start = time.time()
                if slot.task.timeout:
                    worker.deadline = time.monotonic() + slot.task.timeout + self.deadline_grace
            self._events.append(("logstart", {"nodeid": kwargs["nodeid"], "location": tuple(kwargs["location"]), "worker": wid}))
        elif name == "logreport":
            report = self.config.hook.pytest_report_from_serializable(config=self.config, data=kwargs["data"])
            self._events.append(("logreport", {"report": report, "worker": wid}))
        elif name == "result":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.resolve(slot)
            worker.deadline = None
            self._record_duration(float(kwargs.get("elapsed", 0.0)))
            self._on_result(kwargs["index"])
            self._events.append(("result", {"index": kwargs["index"], "outcome": kwargs["outcome"], "worker": wid}))
        elif name == "done":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.drop(slot)
            self._events.append(("done", {**kwargs, "worker": wid, "crashed": False}))
            self._after_done(worker)
        elif name == "warning":
            self._events.append(("warning", _warning_event(kwargs)))
        elif name == "exit":
            self._events.append(("exit", {"message": str(kwargs.get("message", "")), "returncode": kwargs.get("returncode")}))
        elif name == "interrupt":
            self._events.append(("interrupt", {}))
        elif name == "missing":
            slot = self._slot(worker, kwargs["index"])
            if slot is not None:
                worker.drop(slot)
                message = f"worker {wid} did not collect {slot.task.nodeid!r}"
                self._fail_slot(worker, slot, "setup", message, ("", ""))

    def _choose_worker(self, task: ItemTask, ready: list[WorkerProcess], depth: int) -> WorkerProcess | None:
        """The worker for ``task`` among ``ready`` ones, or None if all are full.

        A task naming a live worker (a retry) goes there whatever its load:
        that worker holds the failed attempt's teardown until it gets its next
        task.  Otherwise the least loaded worker wins, and among equals the one
        that ran the task's module last (its module fixtures are set up).
        """
        if task.worker is not None:
            for worker in ready:
                if worker.wid == task.worker:
                    return worker
        candidates = [w for w in ready if w.load < depth]
        if not candidates:
            return None
        module = task.nodeid.split("::", 1)[0]
        return min(candidates, key=lambda w: (w.load, w.last_module != module))

    def _record_duration(self, elapsed: float) -> None:
        """Keep a moving mean of item durations (setup + call) for :meth:`_depth`."""
        mean = self._mean_duration
        self._mean_duration = elapsed if mean is None else 0.8 * mean + 0.2 * elapsed

    def _ready_depth(self) -> int:
        """Tasks a ready worker may hold: :meth:`_depth`, but only the one it runs while another starts.

        Items handed to a worker are never taken back.  Workers become ready
        one by one (a replacement after a crash, a session on a busy host); if
        a ready one prefetched a batch meanwhile, it would queue long items
        behind each other while the next worker, ready moments later, finds
        nothing left to take.  Holding one item each until every worker that
        is starting has started keeps the rest in the backlog, for whichever
        worker is free first; a round trip per item costs little for that
        short while.
        """
        if any(self._starting(worker) for worker in self._pool):
            return 1
        return self._depth()

    def _starting(self, worker: WorkerProcess) -> bool:
        """Whether ``worker`` will be ready soon (it is alive and collecting)."""
        return not (worker.ready or worker.closing or worker.exited)

    def _free_prefetch(self) -> int:
        """Free prefetch capacity of live workers (see :meth:`_ready_depth`) minus tasks not handed out yet."""
        depth = self._ready_depth()
        capacity = sum(max(0, depth - w.load) for w in self._pool if not w.closing)
        return max(0, capacity - len(self._backlog))

    def _ready_workers(self) -> list[WorkerProcess]:
        """Workers that take tasks now."""
        return [w for w in self._pool if w.ready and not w.closing and not w.exited]

    def _hand_out(self, worker: WorkerProcess, task: ItemTask, batches: Batches) -> None:
        """Give ``task`` (off the backlog already) to ``worker``, in the batch :meth:`_send_batches` sends it."""
        worker.assign(task)
        worker.last_module = task.nodeid.split("::", 1)[0]
        windex = worker.index_map[task.index] if worker.index_map is not None else task.index
        batches.setdefault(worker.wid, (worker, []))[1].append((task.index, windex, task.nodeid, task.timeout))

    @staticmethod
    def _send_batches(batches: Batches) -> None:
        """One ``run`` message per worker, with every task handed to it in this round."""
        for worker, tasks in batches.values():
            worker.send("run", tasks=tasks)

    def _depth(self) -> int:
        """Tasks a worker may hold: enough to hide the round trip, few enough to balance the tail."""
        mean = self._mean_duration
        if mean is None or mean >= 0.05:
            # Unknown or long items: never queue one behind another, a worker that
            # is still starting (or about to be idle) may take it.
            return 1
        if mean >= 0.005:
            return 2
        return 8

    def _on_result(self, index: int) -> None:
        """Hook for subclasses (exclusive tasks)."""

    def _after_done(self, worker: WorkerProcess) -> None:
        self._shutdown_idle()

    # -- failures ---------------------------------------------------------

    def _make_report(
        self, task: ItemTask, when: str, outcome: str, longrepr: str | None, sections: list[tuple[str, str]], start: float
    ) -> pytest.TestReport:
        assert self._session is not None
        location: tuple[str, int | None, str] = (task.nodeid.split("::")[0], None, task.nodeid)
        keywords: dict[str, Any] = {}
        items = self._session.items
        if 0 <= task.index < len(items) and items[task.index].nodeid == task.nodeid:
            item = items[task.index]
            location = item.location
            keywords = {name: 1 for name in item.keywords}
        stop = time.time()
        return pytest.TestReport(
            task.nodeid,
            location,
            keywords,
            outcome,  # type: ignore[arg-type]
            longrepr,
            when,  # type: ignore[arg-type]
            sections=sections,
            duration=max(0.0, stop - start) if start else 0.0,
            start=start or stop,
            stop=stop,
            user_properties=[],
        )

    def _fail_slot(self, worker: WorkerProcess, slot: _Slot, when: str, message: str, captured: tuple[str, str]) -> None:
        """Turn an item that can no longer finish normally into failed events."""
        task, wid = slot.task, worker.wid
        sections = [(f"Captured {name} {when}", text) for name, text in zip(("stdout", "stderr"), captured) if text]
        if when != "teardown":
            if not slot.started:
                location = self._make_report(task, "setup", "passed", None, [], 0).location
                self._events.append(("logstart", {"nodeid": task.nodeid, "location": location, "worker": wid}))
            report = self._make_report(task, when, "failed", message, sections, slot.start)
            self._events.append(("logreport", {"report": report, "worker": wid}))
            self._on_result(task.index)
            self._events.append(("result", {"index": task.index, "outcome": "failed", "worker": wid}))
            closing = self._make_report(task, "teardown", "passed", None, [], 0)
            self._events.append(("logreport", {"report": closing, "worker": wid}))
        else:
            report = self._make_report(task, "teardown", "failed", message, sections, 0)
            self._events.append(("logreport", {"report": report, "worker": wid}))
        start = slot.start or time.time()
        self._events.append(
            ("done", {"index": task.index, "worker": wid, "start": start, "stop": time.time(), "crashed": True})
        )

    def _crash_message(self, worker: WorkerProcess, slot: _Slot) -> tuple[str, str]:
        """(when, message) for the item a dead worker was running."""
        reason = exit_reason(worker.proc.returncode)
        tail = worker.tail_text()
        if worker.timed_out is not None:
            head = (
                f"Timeout: {slot.task.nodeid} did not finish within {worker.timed_out:g} s on worker "
                f"{worker.wid}; the worker was killed ({reason}) and replaced."
            )
            detail = "Stack of the worker when it was stopped" if "File" in tail else "Last output of the worker"
        else:
            where = "in the teardown of" if slot.result else "while running"
            head = f"worker {worker.wid} crashed {where} {slot.task.nodeid} ({reason})"
            head += "." if worker.oneshot else "; the worker was replaced."
            detail = "Last output of the worker"
        if worker.fatal:
            tail = f"{worker.fatal}\n{tail}"
        message = head + (f"\n\n{detail}:\n{tail}" if tail.strip() else "")
        return ("teardown" if slot.result else "call"), message

    def _on_exit(self, worker: WorkerProcess) -> None:
        """Account for a worker that ended (normally, crashed or killed by a timeout)."""
        captured = worker.read_capture()
        self._close_worker(worker, kill=True)
        if worker in self._pool:
            self._pool.remove(worker)
        slots = list(worker.slots)
        worker.slots.clear()
        worker.load = 0
        if worker.fatal and not slots:
            self._fail(f"worker {worker.wid} failed: {worker.fatal}")
            return
        if worker.oneshot and not worker.ready and slots and not self._killed:
            message = (
                f"subprocess worker {worker.wid} ended before it collected {slots[0].task.nodeid} "
                f"({exit_reason(worker.proc.returncode)}):\n{worker.tail_text()}"
            )
            self._fail_slot(worker, slots[0], "setup", message, captured)
            self._after_exit(worker, crashed=True)
            return
        if not worker.ready and not worker.closing and not self._killed:
            self._start_failures += 1
            if self._start_failures >= _MAX_START_FAILURES or worker.collected is None:
                self._fail(
                    f"worker {worker.wid} exited before it was ready ({exit_reason(worker.proc.returncode)}):\n"
                    f"{worker.tail_text()}"
                )
                return
        if slots:
            first, rest = slots[0], slots[1:]
            when, message = self._crash_message(worker, first)
            self._fail_slot(worker, first, when, message, captured)
            # Items queued behind the crashed one never started: hand them out again.
            for slot in reversed(rest):
                self._backlog.appendleft(slot.task)
            reason = "timeout" if worker.timed_out is not None else exit_reason(worker.proc.returncode)
            self._events.append(("worker_lost", {"worker": worker.wid, "reason": reason}))
        self._after_exit(worker, crashed=bool(slots))

    def _after_exit(self, worker: WorkerProcess, crashed: bool) -> None:
        """Hook: replace the worker if more work may come."""

    def _kill(self, worker: WorkerProcess) -> None:
        """SIGKILL the worker and everything it started (overridden for remote workers)."""
        if worker.proc.returncode is None:
            kill_process_tree(worker.proc.pid)
            with contextlib.suppress(Exception):
                worker.proc.wait(timeout=5)
        else:
            # The leader is gone; grandchildren may still hold its process group.
            signal_group(worker.proc.pid, signal.SIGKILL)

    def _abort(self, worker: WorkerProcess) -> None:
        """SIGABRT the worker: faulthandler dumps every thread's stack, then it dies."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.proc.pid, signal.SIGABRT)

    def _close_worker(self, worker: WorkerProcess, kill: bool) -> None:
        if kill:
            self._kill(worker)
        worker.exited = True
        fds = {fd for fd in (worker.read_fd, worker.write_fd, worker.out_fd, worker.lifeline_fd, worker.pidfd) if fd is not None and fd >= 0}
        for fd in fds:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
        for fd in (*fds, *worker.capture_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.capture_fds = []
        worker.pidfd = None
        worker.read_fd = worker.write_fd = worker.out_fd = worker.lifeline_fd = -1

    def _fail(self, message: str) -> None:
        """A fatal problem: report it and stop every worker."""
        self._events.append(("error", {"message": message}))
        for worker in list(self._pool):
            self._close_worker(worker, kill=True)
        self._pool.clear()
        self._finished = True

    # -- deadlines, shutdown ---------------------------------------------

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._pool):
            if worker.deadline is not None and worker.deadline <= now and not worker.exited:
                self._time_out(worker)

    def _time_out(self, worker: WorkerProcess) -> None:
        """Stop a worker whose item ran past its timeout, keeping a stack dump if possible."""
        slot = next((s for s in worker.slots if not s.result), None)
        worker.deadline = None
        worker.timed_out = slot.task.timeout if slot is not None and slot.task.timeout else 0.0
        captured = worker.read_capture()
        self._abort(worker)
        try:
            worker.proc.wait(timeout=_ABORT_GRACE)
        except subprocess.TimeoutExpired:
            self._kill(worker)
        self._read_channel(worker)
        self._read_output(worker)
        worker.capture_fds, fds = [], worker.capture_fds
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.read_capture = lambda: captured  # type: ignore[method-assign]
        self._on_exit(worker)

    def _shutdown_idle(self) -> None:
        """Once finishing, tell workers with nothing left to run to wind down."""
        if not self._finishing or self._backlog:
            return
        for worker in self._pool:
            if not worker.closing and worker.load == 0:
                worker.closing = True
                worker.send("shutdown")

    def _check_finished(self) -> None:
        if not self._finishing or self._backlog or self._finished:
            return
        if all(worker.bye and self.release_on_bye for worker in self._pool):
            self._finished = True

    def _dispatch(self) -> None:
        raise NotImplementedError


def _warning_event(kwargs: dict[str, Any]) -> dict[str, Any]:
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


@final
class ProcessRunner(WorkerPool):
    """``--executor-backend=process``: N warm pytest sessions, reused for the whole run."""

    name = "process"
    worker_prefix = "w"

    def __init__(self, config: pytest.Config, workers: int) -> None:
        super().__init__(config, workers)
        self._exclusive: int | None = None

    def _start_workers(self) -> None:
        while len(self._pool) < self.workers:
            self._spawn()

    def prefork(self) -> bool:
        """Fork the workers now, before the controller loads its conftests and configures.

        A fork starts with every import and plugin of the controller loaded,
        where a fresh ``python -m pytest`` pays about a second of imports
        before it can collect.  The child returns True (and must become a
        worker: :func:`pytest_executor.backends.worker.become_forked_worker`); the
        controller returns False.  Only called while the process has a single
        thread; :meth:`start` later sends each forked worker its basetemp.
        """
        from pytest_executor.backends.worker import become_forked_worker

        for _ in range(self.workers):
            wid = f"{self.worker_prefix}{self._spawned}"
            c2w_r, c2w_w = os.pipe()
            w2c_r, w2c_w = os.pipe()
            life_r, life_w = os.pipe()
            out_r, out_w = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    # Only the controller may hold the controller's ends, or a worker
                    # would keep a sibling alive (lifeline) after the controller died.
                    for fd in self._parent_fds() + [c2w_w, w2c_r, life_w, out_r]:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    self._pool.clear()
                    # Closed through its object: a collected epoll object closes its
                    # descriptor number again, by then maybe another file's.
                    self._selector.close()
                    env = {
                        ENV_WORKER: wid,
                        ENV_CHANNEL: fd_channel_spec(c2w_r, w2c_w),
                        ENV_LIFELINE: str(life_r),
                        ENV_FORKED: "1",
                        **self.worker_env,
                    }
                    become_forked_worker(self.config, env, out_w)
                except BaseException:
                    os._exit(70)
                return True
            self._spawned += 1
            for fd in (c2w_r, w2c_w, life_r, out_w):
                os.close(fd)
            self._adopt(wid, ForkedProcess(pid, unknown_exit=-int(signal.SIGKILL)), c2w_w, w2c_r, out_r, life_w).forked = True
        # Registered after the last fork: a child must not inherit a duty to kill its siblings.
        self._watch_for_cleanup()
        return False

    def _parent_fds(self) -> list[int]:
        fds: list[int] = []
        for worker in self._pool:
            fds += [worker.write_fd, worker.read_fd, worker.out_fd, worker.lifeline_fd]
            if worker.pidfd is not None:
                fds.append(worker.pidfd)
        return fds

    def _on_result(self, index: int) -> None:
        if self._exclusive == index:
            self._exclusive = None

    def free_slots(self) -> int:
        """Free prefetch capacity of live workers minus tasks not handed out yet."""
        if self._killed or self._finished or self._exclusive is not None:
            return 0
        if any(task.exclusive for task in self._backlog):
            return 0
        return self._free_prefetch()

    def _dispatch(self) -> None:
        if self._killed or self._finished or not self._backlog:
            return
        ready = self._ready_workers()
        depth = self._ready_depth()
        batches: Batches = {}
        while self._backlog and ready and self._exclusive is None:
            task = self._backlog[0]
            if task.exclusive and any(w.load for w in self._pool):
                break  # an exclusive item waits until every worker is idle
            worker = self._choose_worker(task, ready, depth)
            if worker is None:
                break
            self._backlog.popleft()
            self._hand_out(worker, task, batches)
            if task.exclusive:
                self._exclusive = task.index
        self._send_batches(batches)

    def _after_exit(self, worker: WorkerProcess, crashed: bool) -> None:
        if self._killed or self._finished:
            return
        if not self._finishing or self._backlog:
            if len(self._pool) < self.workers:
                self._spawn()
        self._shutdown_idle()
        self._check_finished()


__all__ = ["ProcessRunner", "WorkerPool", "WorkerProcess", "read_workers_option"]
