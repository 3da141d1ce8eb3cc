"""The dask-worker side of the ``dask`` backend: the host task that runs one pytest session.

:func:`host_session` runs as one long task on a dask worker.  It starts the
pytest worker session (:mod:`pytest_executor.backends.worker`) as a child
process, joined to it by local pipes only (the same framed protocol as the
``process`` backend), and relays between that session and the controller
through dask's own comms — nothing else crosses the network:

* **to the controller**: :meth:`distributed.Worker.log_event` on the run's
  topic (the controller subscribed to it).  Each event carries the session's
  channel bytes, its own stdout/stderr, the growth of its capture files (so a
  test whose worker is killed still shows its output so far) and, last, its
  exit status.  Events are sent as soon as data arrives, but at most one per
  :data:`BATCH_SECONDS` per session: a burst of small frames becomes one event.
* **from the controller**: the session's ``distributed.Queue``.  A receiver
  thread waits on it and writes frames into the session's input pipe, or obeys
  ``kill``/``abort``/``stop``.

The session runs in its own process group, watches a lifeline pipe (it dies
with its host) and is killed with its whole tree when the host ends.  A
watchdog ends the session when this task is cancelled (the controller went
away, or gave up on this incarnation after a worker loss) or the worker is
closing.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from executor._kill import kill_tree
from pytest_executor.backends._protocol import (
    ENV_PATH_MAP,
    spawn_piped_session,
    write_all,
)

BATCH_SECONDS = 0.005
"""At most one event per session per this many seconds: bursts are coalesced."""
_MAX_EVENT_BYTES = 1 << 20
_CAPTURE_POLL = 0.1
"""Seconds between looks at the session's capture files (their growth is the output so far)."""
_WATCHDOG = 1.0
"""Seconds between checks that this task is still wanted."""
_ALIVE_STATES = ("executing", "long-running")
ENV_DASK_WORKER = "PYTEST_EXECUTOR_DASK_WORKER"
"""Set in a session to the address of the dask worker hosting it."""


def copy_folder(name: str, nanny_address: str) -> str:
    """The folder name of the run's copy ``name`` for the nanny at ``nanny_address`` (one copy per nanny)."""
    return f"{name}-{re.sub(r'[^A-Za-z0-9.]+', '-', nanny_address).strip('-')}"


def copy_root(worker: Any, name: str) -> str:
    """Where ``worker``'s nanny unpacked the copy ``name`` (:class:`~pytest_executor.backends._dask_ship.ShippedCopy`).

    The nanny unpacks it into its own local directory, the parent of the
    worker's (``<local-directory>/dask-scratch-space``), in a folder named
    for the nanny too: nannies may share that directory.
    """
    return os.path.join(os.path.dirname(worker.local_directory), copy_folder(name, str(worker.nanny or "")))


def remove_copy(name: str, dask_worker: Any = None) -> None:
    """Run on each worker at the end (``client.run``): remove the run's copy and scratch there."""
    if dask_worker is not None:
        remove_run_dirs(copy_root(dask_worker, name))


def remove_run_dirs(root: str) -> None:
    """Remove a run's copy at ``root`` and its sessions' scratch folders."""
    import shutil

    for path in (root, root + "-tmp"):
        shutil.rmtree(path, ignore_errors=True)


def _resolve(arg: Any, root: str | None) -> str:
    """An argument as sent: a string, or ``(head, relative path, tail)`` inside the shipped copy."""
    if isinstance(arg, str):
        return arg
    head, rel, tail = arg
    assert root is not None
    return f"{head}{os.path.join(root, rel) if rel else root}{tail}"


def host_session(spec: dict[str, Any]) -> int:
    """Dask task: run one pytest worker session here and relay it until it ends.

    Returns the session's exit code (negative: killed by that signal).
    """
    from distributed import Queue, get_client, get_worker

    worker = get_worker()
    wid: str = spec["wid"]
    relay = _Relay(worker, spec["topic"], wid)
    root: str | None = None
    if spec["copy"] is not None:
        root = os.path.realpath(copy_root(worker, spec["copy"]))  # as the session's getcwd() will say
        if not os.path.isdir(root):
            relay.post("start", address=worker.address, error=(
                f"dask worker {worker.address} has no copy of the test tree at {root}: it gets one "
                "through its nanny (a nanny plugin); workers started with "
                "--no-nanny cannot take part"))
            relay.flush()
            return 70
    from pytest_executor import __version__

    if __version__ != spec["version"]:
        relay.post("start", address=worker.address, error=(
            f"dask worker {worker.address} has pytest-executor {__version__}, the controller "
            f"{spec['version']}: install the same version on every worker"))
        relay.flush()
        return 70
    key = worker.get_current_task()
    proc, life_w, out_r, chan_r, chan_w = _start({**spec, "dask_worker": worker.address}, root)
    relay.post("start", address=worker.address, pid=proc.pid)
    relay.flush()
    queue: Any = None
    receiver: threading.Thread | None = None
    try:
        # The worker's client connects to the scheduler (a TLS handshake) while the session imports pytest.
        queue = Queue(spec["queue"], client=get_client())
        receiver = threading.Thread(
            target=_receive, args=(queue, proc, chan_w), name=f"pytest-executor-{wid}-receiver", daemon=True
        )
        receiver.start()
        returncode = _supervise(proc, relay, out_r, chan_r, lambda: _wanted(worker, key))
    finally:
        kill_tree(proc.pid)
        returncode = proc.wait()
        os.close(life_w)  # the session's lifeline: it dies with its host
        for fd in (out_r, chan_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        relay.post("exit", returncode=returncode)
        relay.flush()
        if receiver is not None:
            # The receiver waits on the queue: our own "end" ends it before we let go of the queue.
            with contextlib.suppress(Exception):
                queue.put([["end"]], timeout=5)
            receiver.join(timeout=10)
        if queue is not None:
            with contextlib.suppress(Exception):
                queue.close()
        with contextlib.suppress(OSError):
            os.close(chan_w)
    return returncode


def _start(spec: dict[str, Any], root: str | None) -> tuple[subprocess.Popen[bytes], int, int, int, int]:
    """Start the session: (process, lifeline write end, output read end, channel read end, channel write end)."""
    env = {**os.environ, **spec["env"], ENV_DASK_WORKER: spec["dask_worker"]}
    argv = [_resolve(arg, root) for arg in spec["argv"]]
    cwd = spec["cwd"] if root is None else os.path.join(root, spec["cwd"])
    if root is not None:
        scratch = os.path.join(root + "-tmp", spec["wid"])
        os.makedirs(os.path.dirname(scratch), mode=0o700, exist_ok=True)
        argv.insert(0, f"--basetemp={scratch}")
        paths = [os.path.join(root, rel) if rel else root for rel in spec["pythonpath"]]
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env[ENV_PATH_MAP] = f"{root}\n{spec['rootdir']}"
    if spec["module"]:
        prefix = [sys.executable, "-m", "pytest"]
    else:  # like the pytest console script: the working directory is not importable
        prefix = [sys.executable, "-c", "import sys; sys.path.pop(0); import pytest; raise SystemExit(pytest.main())"]
    proc, c2w_w, w2c_r, out_r, life_w = spawn_piped_session([*prefix, *argv], cwd, env, spec["wid"])
    return proc, life_w, out_r, w2c_r, c2w_w


def _wanted(worker: Any, key: Any) -> bool:
    """Whether this task is still executing on a running worker (not cancelled, not closing)."""
    if getattr(worker.status, "name", "running") != "running":
        return False
    state = worker.state.tasks.get(key)
    return state is not None and state.state in _ALIVE_STATES


def _receive(queue: Any, proc: subprocess.Popen[bytes], chan_w: int) -> None:
    """Thread: obey the controller's queue until ``end``/``stop`` (or the queue fails)."""
    while True:
        try:
            items = queue.get()
        except Exception:  # the worker or the scheduler is going away
            return
        for item in items:
            kind = item[0]
            if kind == "frame":
                with contextlib.suppress(OSError):
                    write_all(chan_w, item[1])
            elif kind == "abort":  # timeout: faulthandler dumps the stack, then the session dies
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGABRT)
            elif kind in ("kill", "stop"):
                kill_tree(proc.pid)
            if kind in ("end", "stop"):
                return


class _Relay:
    """Events to the controller: coalesced per :data:`BATCH_SECONDS`, sent through the worker's stream."""

    def __init__(self, worker: Any, topic: str, wid: str) -> None:
        self.worker = worker
        self.topic = topic
        self.wid = wid
        self.pending: list[list[Any]] = []
        self.size = 0
        self.last = 0.0

    def post(self, kind: str, **payload: Any) -> None:
        """Queue one event item (``flush`` sends it)."""
        self.pending.append([kind, payload])
        self.size += len(payload.get("data", b""))

    def due(self) -> float | None:
        """Seconds until pending items may go (0: now), ``None`` when nothing is pending."""
        if not self.pending:
            return None
        if self.size >= _MAX_EVENT_BYTES:
            return 0.0
        return max(0.0, self.last + BATCH_SECONDS - time.monotonic())

    def flush(self) -> None:
        """Send what is pending as one event."""
        if self.pending:
            items, self.pending, self.size = self.pending, [], 0
            self.worker.log_event(self.topic, {"w": self.wid, "ev": items})
            self.last = time.monotonic()


class _Captures:
    """Follows the session's capture files: what a running test wrote so far."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.sizes: list[int] = []

    def open(self, pid: int, fds: list[int]) -> None:
        for fd in fds[:2]:
            with contextlib.suppress(OSError):
                self.fds.append(os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY))
                self.sizes.append(0)

    def poll(self, relay: _Relay) -> None:
        """Post the growth of each capture file; a shrunk file (the next phase) starts over."""
        for number, fd in enumerate(self.fds):
            try:
                size = os.fstat(fd).st_size
            except OSError:
                continue
            seen = self.sizes[number]
            if size == seen:
                continue
            if size < seen:
                seen = 0
            data = os.pread(fd, size - seen, seen)
            self.sizes[number] = size
            relay.post("cap", stream=number, reset=seen == 0, data=data)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


_HEADER = struct.Struct("!I")


def _first_message(buffered: bytes) -> tuple[str, dict[str, Any]] | None:
    """The session's first frame (``collected``), once it is complete."""
    if len(buffered) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(buffered)
    if len(buffered) < _HEADER.size + size:
        return None
    message: tuple[str, dict[str, Any]] = pickle.loads(buffered[_HEADER.size : _HEADER.size + size])
    return message


def _supervise(proc: subprocess.Popen[bytes], relay: _Relay, out_r: int, chan_r: int, wanted: Any) -> int:
    """Relay the session's channel, output and captures until it exits (or is no longer wanted)."""
    selector = selectors.DefaultSelector()
    selector.register(out_r, selectors.EVENT_READ, "out")
    selector.register(chan_r, selectors.EVENT_READ, "chan")
    captures = _Captures()
    head: bytes | None = b""  # the channel until its first frame was read (then None)
    next_check = time.monotonic() + _WATCHDOG
    try:
        while proc.poll() is None or selector.get_map():
            waits = [_CAPTURE_POLL if captures.fds else _WATCHDOG, max(0.0, next_check - time.monotonic())]
            due = relay.due()
            if due is not None:
                waits.append(due)
            if proc.poll() is not None:
                waits.append(0.05)  # the session ended: only its last bytes are left to read
            for key, _ in selector.select(min(waits)):
                data = b""
                with contextlib.suppress(OSError):
                    data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fd)
                    continue
                relay.post(key.data, data=data)
                if key.data == "chan" and head is not None:
                    head += data
                    first = _first_message(head)
                    if first is not None:
                        head = None
                        if first[0] == "collected" and sys.platform.startswith("linux"):
                            captures.open(int(first[1].get("pid", proc.pid)), list(first[1].get("capture_fds", [])))
            if proc.poll() is not None and not any(True for _ in selector.select(0)):
                break
            captures.poll(relay)
            if relay.due() == 0.0:
                relay.flush()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + _WATCHDOG
                if not wanted():
                    kill_tree(proc.pid)
        captures.poll(relay)
        return proc.wait()
    finally:
        captures.close()
        selector.close()


__all__ = ["BATCH_SECONDS", "ENV_DASK_WORKER", "copy_folder", "copy_root", "host_session", "remove_copy", "remove_run_dirs"]
