"""The dask-worker side of the ``dask`` backend: the host task that runs one pytest session.

:func:`host_session` runs as a long dask task.  It connects back to the
controller (the *supervisor* stream, opened with the plain-text hello), starts
the pytest worker session as a child process — in its own session, with a
lifeline pipe so it dies with its host — forwards its output and exit status,
and obeys ``kill``/``abort`` from the controller.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess

from pytest_executor.backends._hello import hello_line
from pytest_executor.backends._protocol import ENV_LIFELINE, FrameDecoder, encode, write_all
from executor._kill import kill_tree

_CONNECT_TIMEOUT = 5.0


def host_session(address: str, token: str, wid: str, argv: list[str], cwd: str, env: dict[str, str]) -> int:
    """Dask task: run one pytest worker session here and supervise it until it ends.

    Returns the session's exit code (negative: killed by that signal).
    """
    host, _, port = address.rpartition(":")
    supervisor = socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT)
    supervisor.settimeout(None)
    supervisor.sendall(hello_line(token, "supervisor", wid))
    life_r, life_w = os.pipe()
    out_r, out_w = os.pipe()
    child_env = {**os.environ, **env, ENV_LIFELINE: str(life_r)}
    child_env.pop("PYTEST_CURRENT_TEST", None)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=subprocess.STDOUT,
            pass_fds=(life_r,),
            start_new_session=True,
        )
    finally:
        os.close(life_r)
        os.close(out_w)
    try:
        return _supervise(proc, supervisor, out_r)
    finally:
        kill_tree(proc.pid)
        proc.wait()
        os.close(life_w)  # the session's lifeline: it dies with its host
        os.close(out_r)
        supervisor.close()


def _supervise(proc: subprocess.Popen[bytes], supervisor: socket.socket, out_r: int) -> int:
    """Forward output, obey kill/abort, report the exit status."""
    decoder = FrameDecoder()
    selector = selectors.DefaultSelector()
    selector.register(out_r, selectors.EVENT_READ, "out")
    selector.register(supervisor, selectors.EVENT_READ, "control")
    send_fd = supervisor.fileno()
    try:
        while proc.poll() is None:
            for key, _ in selector.select(0.5):
                if key.data == "out":
                    data = os.read(out_r, 1 << 16)
                    if data:
                        write_all(send_fd, encode("out", {"data": data}))
                    else:
                        selector.unregister(out_r)
                    continue
                data = supervisor.recv(1 << 16)
                if not data:  # the controller is gone
                    kill_tree(proc.pid)
                    return proc.wait()
                for name, _kwargs in decoder.feed(data):
                    if name == "kill":
                        kill_tree(proc.pid)
                    elif name == "abort":
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(proc.pid, signal.SIGABRT)
        returncode = proc.wait()
        os.set_blocking(out_r, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(out_r, 1 << 16):
                write_all(send_fd, encode("out", {"data": data}))
        write_all(send_fd, encode("exit", {"returncode": returncode}))
        return returncode
    except OSError:
        kill_tree(proc.pid)
        return proc.wait()
    finally:
        selector.close()


__all__ = ["host_session"]
