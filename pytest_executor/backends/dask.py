"""The ``dask`` backend: pytest worker sessions hosted on the workers of a dask cluster.

For each session the controller submits one long-running *host task*
(:func:`host_session`) pinned to a dask worker.  The host task starts a pytest
worker session (:mod:`pytest_executor.backends.worker`) as a child process of the dask
worker — so tests get a main thread of their own, signals work, and a crash
kills only that session, never the dask worker — and supervises it:

* the session talks to the controller over TCP with the same framed protocol
  as the ``process`` backend (:mod:`pytest_executor.backends._protocol`);
* the host task keeps a second connection, the *supervisor* stream: it
  forwards the session's own stdout/stderr and its exit status, and obeys
  ``kill``/``abort`` (timeout: SIGABRT so faulthandler dumps the stack).

Items are handed out as on the ``process`` backend (short ones prefetched),
except that while a session is still starting, every ready session holds only
the item it runs (:meth:`WorkerPool._ready_depth`): sessions on a cluster
become ready one by one, and items prefetched by the first would never reach
the next.

Both connections start with a plain-text hello carrying a random token, so the
controller never unpickles data from a peer that does not know it.  The
cluster is a ``distributed.LocalCluster`` started for the run (one
single-threaded worker process per ``--executor-workers``), or the scheduler at
``--executor-dask-address`` (one session per dask worker); an unreachable
address is a :class:`pytest.UsageError` within 5 s.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import socket
import subprocess
import time
from typing import Any, final

import pytest

from pytest_executor.backends._dask_host import host_session
from pytest_executor.backends._hello import MAX_LINE, check_hello, line_complete
from pytest_executor.backends._protocol import (
    ENV_CHANNEL,
    ENV_WORKER,
    FrameDecoder,
    encode,
    read_available,
    write_all,
)
from pytest_executor.backends._pipe_pool import WorkerPool
from pytest_executor.backends._pipe_worker import Batches, WorkerProcess

_CONNECT_TIMEOUT = 5.0
_FORWARDED_ENV = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
"""Controller environment that shapes the pytest session, passed to remote sessions."""
@final
class RemoteProcess:
    """The controller's view of a session hosted on a dask worker (a ``Popen`` look-alike)."""

    def __init__(self, runner: DaskRunner, wid: str) -> None:
        self.runner = runner
        self.wid = wid
        self.pid = -1
        self.returncode: int | None = None
        self.control_fd = -1
        self.lost = False

    def poll(self) -> int | None:
        """The exit status once the supervisor reported it (or vanished)."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the supervisor reports the exit (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if self.control_fd < 0:
                self.returncode = -int(signal.SIGKILL)
                break
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise subprocess.TimeoutExpired(f"dask session {self.wid}", timeout or 0)
            ready = selectors.DefaultSelector()
            try:
                ready.register(self.control_fd, selectors.EVENT_READ)
                if ready.select(wait):
                    self.runner._read_control(self, notify=False)
            finally:
                ready.close()
        return self.returncode

    def send(self, name: str) -> None:
        """Ask the supervisor to ``kill`` or ``abort`` the session."""
        if self.control_fd >= 0:
            with contextlib.suppress(OSError):
                write_all(self.control_fd, encode(name, {}))


class DaskRunner(WorkerPool):
    """``--executor-backend=dask``: warm pytest sessions on the workers of a dask cluster."""

    name = "dask"
    worker_prefix = "d"

    def __init__(self, config: pytest.Config) -> None:
        from pytest_executor.config.options import get_option

        self.address: str | None = get_option(config, "dask-address")
        self.requested: int | None = get_option(config, "workers")
        super().__init__(config, self.requested or 2)
        self._run_id = secrets.token_hex(4)
        self._tokens: dict[str, str] = {}
        """Each session's own random token: a session can only ever claim its own connections."""
        self._cluster: Any = None
        self._scratch: str | None = None
        """The private scratch directory of the LocalCluster we start."""
        self._client: Any = None
        self._futures: list[Any] = []
        self._listener: socket.socket | None = None
        self._pending_hello: dict[int, tuple[socket.socket, bytes]] = {}
        self._by_wid: dict[str, WorkerProcess] = {}
        self._control_decoders: dict[str, FrameDecoder] = {}
        self._dask_workers: list[str] = []
        self._threads: dict[str, int] = {}
        """Threads of each dask worker: how many host tasks (sessions) it runs at once."""
        self._host_of: dict[str, str] = {}
        """Dask worker hosting each session: a replacement goes where its predecessor was."""

    # -- cluster ------------------------------------------------------------

    def _start_workers(self) -> None:
        self._connect_cluster()
        self._listen()
        for number in range(self.workers):
            self._spawn_remote(self._dask_workers[number % len(self._dask_workers)])

    def _connect_cluster(self) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:
            raise pytest.UsageError(
                f"--executor-backend=dask needs dask.distributed: pip install 'pytest-executor[dask]' ({error})"
            ) from None
        if self.address:
            try:
                self._client = Client(self.address, timeout=_CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, TimeoutError) as error:
                raise pytest.UsageError(
                    f"--executor-dask-address {self.address}: cannot reach the dask scheduler "
                    f"within {_CONNECT_TIMEOUT:g} s ({error})"
                ) from None
        else:
            import tempfile

            import dask

            # dask's default scratch space is shared and kept in the temp dir: ours is private and removed
            self._scratch = tempfile.mkdtemp(prefix="pytest-executor-dask-")
            with dask.config.set({"temporary-directory": self._scratch}):
                self._cluster = self._start_local_cluster(LocalCluster)
            self._client = Client(self._cluster, set_as_default=False)
        workers = self._client.scheduler_info(n_workers=-1)["workers"]
        self._dask_workers = sorted(workers)
        self._threads = {address: int(info.get("nthreads") or 1) for address, info in workers.items()}
        if not self._dask_workers:
            raise pytest.UsageError(f"--executor-dask-address {self.address}: the cluster has no worker")
        if self.address and not self.requested:
            self.workers = len(self._dask_workers)

    def _start_local_cluster(self, LocalCluster: Any) -> Any:  # noqa: N803 - the class, imported lazily
        import logging

        return LocalCluster(
            local_directory=self._scratch,
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            # loopback only, on a free port: never on the network, never 8787 of a user cluster
            dashboard_address="127.0.0.1:0",
            security=True,  # temporary TLS certificates: other local users cannot connect
            silence_logs=logging.ERROR,
        )

    def _live_host(self, preferred: str) -> str:
        """``preferred`` if that dask worker is still there, else the live one hosting fewest sessions."""
        try:
            workers = self._client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # the scheduler is unreachable: the loose restriction still lets dask choose
            return preferred
        if preferred in workers or not workers:
            return preferred
        for address, info in workers.items():
            self._threads.setdefault(address, int(info.get("nthreads") or 1))
        self._dask_workers = sorted(workers)
        hosting = {address: 0 for address in workers}
        for other in self._pool:
            host = self._host_of.get(other.wid)
            if host in hosting and not other.exited:
                hosting[host] += 1
        return min(sorted(hosting), key=hosting.__getitem__)

    def _controller_host(self) -> str:
        if not self.address:
            return "127.0.0.1"
        from distributed.utils import get_ip

        scheduler = str(self._client.scheduler.address)
        host = scheduler.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        return str(get_ip(host))

    def _listen(self) -> None:
        host = self._controller_host()
        listener = socket.create_server((host, 0), backlog=64)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, ("listen", None))

    def _spawn_remote(self, dask_worker: str) -> WorkerProcess:
        assert self._listener is not None and self._basetemp is not None
        wid = f"{self.worker_prefix}{self._spawned}"
        self._spawned += 1
        host, port = self._listener.getsockname()[:2]
        address = f"{host}:{port}"
        argv = self._worker_argv(wid, None)
        env = {name: value for name, value in os.environ.items() if name in _FORWARDED_ENV}
        token = self._tokens[wid] = secrets.token_hex(16)
        env.update({ENV_WORKER: wid, ENV_CHANNEL: f"tcp:{address}:{token}"})
        remote = RemoteProcess(self, wid)
        worker = WorkerProcess(wid, remote, -1, -1, -1, -1, None, False)
        self._pool.append(worker)
        self._by_wid[wid] = worker
        self._control_decoders[wid] = FrameDecoder()
        self._host_of[wid] = dask_worker
        future = self._client.submit(
            host_session,
            address,
            token,
            wid,
            argv,
            str(self.config.invocation_params.dir),
            env,
            key=f"pytest-executor-session-{wid}-{self._run_id}",
            workers=[dask_worker],
            # Loose: if that dask worker dies (its nanny restarts it on a new address),
            # the session runs on another one instead of waiting for a worker that is gone.
            allow_other_workers=True,
            pure=False,
        )
        self._futures.append(future)
        return worker

    # -- connections ----------------------------------------------------------

    def _on_readable(self, kind: str, worker: Any) -> None:
        # ``worker`` is the selector key's payload: a WorkerProcess, or a socket fd for "hello".
        if kind == "listen":
            self._accept()
        elif kind == "hello":
            self._read_hello(worker)
        elif kind == "control":
            self._read_control(worker.proc)
        else:
            super()._on_readable(kind, worker)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self._pending_hello[conn.fileno()] = (conn, b"")
            self._selector.register(conn, selectors.EVENT_READ, ("hello", conn.fileno()))

    def _read_hello(self, fd: int) -> None:
        conn, buffered = self._pending_hello[fd]
        try:
            data = conn.recv(MAX_LINE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buffered += data
        if data and not line_complete(buffered):
            self._pending_hello[fd] = (conn, buffered)
            return
        del self._pending_hello[fd]
        self._selector.unregister(conn)
        worker = self._claim(buffered)
        if worker is None:
            conn.close()  # not ours: never unpickle what it sends
            return
        hello = check_hello(buffered, self._tokens[worker.wid])
        assert hello is not None
        rest = hello.rest
        fd = conn.detach()
        if hello.role == "supervisor":
            remote: RemoteProcess = worker.proc
            remote.control_fd = fd
            self._selector.register(fd, selectors.EVENT_READ, ("control", worker))
            if rest:
                self._feed_control(remote, rest)
        else:
            worker.read_fd = worker.write_fd = fd
            self._selector.register(fd, selectors.EVENT_READ, ("chan", worker))
            for message in worker.outbox:  # e.g. a shutdown sent while it was starting
                with contextlib.suppress(OSError):
                    write_all(fd, message)
            worker.outbox.clear()
            for name, kwargs in worker.decoder.feed(rest):
                self._on_message(worker, name, kwargs)

    def _claim(self, buffered: bytes) -> WorkerProcess | None:
        """The session a valid hello in ``buffered`` opens a connection for, if it may.

        The token is the session's own; each of its two connections
        (``supervisor``, ``session``) can be opened once.
        """
        line = buffered.partition(b"\n")[0].split(b" ")
        wid = line[3].decode("ascii", "replace") if len(line) == 4 else ""
        worker = self._by_wid.get(wid)
        token = self._tokens.get(wid)
        if worker is None or token is None or worker.exited:
            return None
        hello = check_hello(buffered, token)
        if hello is None:
            return None
        if hello.role == "supervisor" and worker.proc.control_fd < 0:
            return worker
        if hello.role == "session" and worker.read_fd < 0:
            return worker
        return None

    def _read_control(self, remote: RemoteProcess, notify: bool = True) -> None:
        """Read the supervisor stream; with ``notify``, account for an exit it reports."""
        if remote.control_fd < 0:
            return
        for data in read_available(remote.control_fd):
            if not data:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(remote.control_fd)
                with contextlib.suppress(OSError):
                    os.close(remote.control_fd)
                remote.control_fd = -1
                if remote.returncode is None:
                    remote.lost = True
                    remote.returncode = -int(signal.SIGKILL)
                if notify:
                    self._exited(remote)
                return
            self._feed_control(remote, data, notify)
            if remote.control_fd < 0:  # the data ended the stream
                return

    def _feed_control(self, remote: RemoteProcess, data: bytes, notify: bool = True) -> None:
        worker = self._by_wid.get(remote.wid)
        if worker is None:
            return
        for name, kwargs in self._control_decoders[remote.wid].feed(data):
            if name == "out":
                self._take_output(worker, kwargs["data"])
            elif name == "exit":
                remote.returncode = int(kwargs["returncode"])
                if notify:
                    self._exited(remote)

    def _exited(self, remote: RemoteProcess) -> None:
        worker = self._by_wid.get(remote.wid)
        if worker is not None and not worker.exited and worker in self._pool:
            self._read_channel(worker)
            self._on_exit(worker)

    # -- process control, the remote way -----------------------------------------

    def _wait_time(self, end: float | None) -> float | None:
        now = time.monotonic()
        waits = [] if end is None else [max(0.0, end - now)]
        waits += [max(0.0, w.deadline - now) for w in self._pool if w.deadline is not None]
        return min(waits) if waits else None

    def _reap(self, worker: WorkerProcess) -> None:
        """The session's channel closed: its supervisor reports the exit status."""
        remote: RemoteProcess = worker.proc
        with contextlib.suppress(subprocess.TimeoutExpired):
            remote.wait(timeout=5)
        if remote.returncode is None:
            remote.send("kill")
            remote.returncode = -int(signal.SIGKILL)
        self._exited(remote)

    def _abort(self, worker: WorkerProcess) -> None:
        worker.proc.send("abort")

    def _kill(self, worker: WorkerProcess) -> None:
        remote: RemoteProcess = worker.proc
        remote.send("kill")
        if remote.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                remote.wait(timeout=5)
        if remote.returncode is None:
            remote.returncode = -int(signal.SIGKILL)
        if remote.control_fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(remote.control_fd)
            with contextlib.suppress(OSError):
                os.close(remote.control_fd)
            remote.control_fd = -1

    # -- pool hooks -----------------------------------------------------------------

    def free_slots(self) -> int:
        """Free prefetch capacity of the sessions (see ``_ready_depth``) minus tasks not handed out yet."""
        if self._killed or self._finished:
            return 0
        return self._free_prefetch()

    def _dispatch(self) -> None:
        """Hand queued tasks to the least loaded sessions, a batch per session.

        Short items are prefetched like on the ``process`` backend: over TCP a
        round trip per item would cost more than a trivial test.
        """
        if self._killed or self._finished:
            return
        ready = self._ready_workers()
        depth = self._ready_depth()
        batches: Batches = {}
        while self._backlog:
            worker = self._choose_worker(self._backlog[0], ready, depth)
            if worker is None:
                break
            self._hand_out(worker, self._backlog.popleft(), batches)
        self._send_batches(batches)

    def _starting(self, worker: WorkerProcess) -> bool:
        """Whether ``worker``'s session will be ready soon: not ready yet, yet holding a dask thread.

        A session whose host task waits for a thread of its dask worker (more
        sessions than threads there) starts only when an earlier one ends:
        waiting for it would keep prefetch off for the whole run.
        """
        if worker.ready or worker.closing or worker.exited:
            return False
        host = self._host_of.get(worker.wid)
        ahead = 0
        for other in self._pool:
            if other is worker:
                break
            if self._host_of.get(other.wid) == host and not other.exited:
                ahead += 1
        return ahead < self._threads.get(host or "", 1)

    def _after_exit(self, worker: WorkerProcess, crashed: bool) -> None:
        self._by_wid.pop(worker.wid, None)
        self._tokens.pop(worker.wid, None)
        if self._killed or self._finished:
            return
        if (not self._finishing or self._backlog) and len(self._pool) < self.workers:
            # The host task of the dead session has ended, freeing its dask worker's thread
            # (or the dask worker itself died: then the replacement goes to a live one).
            self._spawn_remote(self._live_host(self._host_of[worker.wid]))
        self._shutdown_idle()
        self._check_finished()

    def kill(self) -> None:
        """Kill every session, then close the client and the cluster we started."""
        super().kill()
        self._close_cluster()

    def _close_cluster(self) -> None:
        for conn, _ in self._pending_hello.values():
            conn.close()
        self._pending_hello.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.cancel(self._futures, force=True)
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=5)
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


__all__ = ["DaskRunner", "host_session"]
