"""The loop of one warm worker process (started by :mod:`executor.engine.backend.process`).

Kept to the standard library plus cloudpickle so a worker starts fast.
Messages are cloudpickled tuples over one socket:

parent → worker: ``("call", func, args, kwargs)``, ``("gen", func, args, kwargs)``,
``("step", op, value)``;
worker → parent: ``("ok", value)``, ``("yield", value)``, ``("return", value)``,
``("err", exception, traceback_text)``.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import traceback
import typing as T
from multiprocessing.connection import Connection

_MAX_FUNCTIONS = 256
"""Functions a worker keeps unpickled; the engine resends an evicted one when asked."""


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the parent dies (no orphans after a crash)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except Exception:  # best effort: EOF on the socket still ends an idle worker
        pass


def _error_reply(exc: BaseException) -> tuple[str, T.Any, str]:
    return ("err", exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _dumps(reply: tuple, dumps: T.Callable[[T.Any], bytes]) -> bytes:
    try:
        return dumps(reply)
    except Exception as exc:  # unpicklable result or exception
        text = reply[2] if reply[0] == "err" else ""
        err = RuntimeError(f"cannot send the job's {'error' if reply[0] == 'err' else 'result'} "
                           f"back to the engine: {exc!r} (value: {reply[1]!r:.200})")
        return dumps(("err", err, text))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def serve(fd: int, parent_pid: int) -> None:
    """Answer requests on socket ``fd`` until the engine closes it."""
    import cloudpickle

    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died while we started
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's business
    conn = Connection(fd)
    stepper: T.Any = None
    functions: "collections.OrderedDict[int, T.Any]" = collections.OrderedDict()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        reply: tuple
        kind = ""
        try:
            msg = cloudpickle.loads(data)
            kind = msg[0]
            if kind == "call":
                from executor.engine.job.utils import call_sync

                reply = ("ok", call_sync(msg[1], msg[2], msg[3]))
            elif kind == "callc":  # a call of a function cached under a token
                from executor.engine.job.utils import call_sync

                token, data = msg[1], msg[2]
                if data is not None:
                    functions[token] = cloudpickle.loads(data)
                    if len(functions) > _MAX_FUNCTIONS:
                        functions.popitem(last=False)
                func = functions.get(token)
                if func is None:  # evicted: ask the engine to send it again
                    reply = ("missing", token)
                else:
                    functions.move_to_end(token)
                    reply = ("ok", call_sync(func, msg[3], msg[4]))
            elif kind == "gen":
                from executor.engine.job.utils import GeneratorStepper

                stepper = GeneratorStepper(msg[1](*msg[2], **msg[3]))
                reply = ("ok", None)
            elif kind == "step":
                reply = stepper.step(msg[1], msg[2])
                if reply[0] == "return":
                    stepper = None
            else:
                raise ValueError(f"unknown request {kind!r}")
        except BaseException as exc:  # report everything, SystemExit included
            if kind == "step":  # a generator that raised is finished
                stepper = None
            reply = _error_reply(exc)
        _flush()
        try:
            conn.send_bytes(_dumps(reply, cloudpickle.dumps))
        except (OSError, EOFError):
            return


def main() -> None:
    """Entry point: ``python -c 'from ..._process_worker import main; main()' FD PARENT_PID SYS_PATH...``."""
    fd, parent_pid = int(sys.argv[1]), int(sys.argv[2])
    extra = [p for p in sys.argv[3:] if p not in sys.path]
    sys.path[:0] = extra
    serve(fd, parent_pid)
