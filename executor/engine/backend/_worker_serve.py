"""The worker side of the process pool: its request loop, worker states and hosted states.

One worker answers the engine's requests in order, one at a time (see the
protocol in :mod:`._process_worker`).  The engine may *prefetch*: send the
next requests before the current one is answered; they wait in the socket
and run first in, first out.  A ``("skip", seq)`` request cancels a call
that has not started: before it starts a call, the worker reads whatever
requests are already waiting, so it sees the skip in time.

Worker states (:class:`executor.engine.WorkerState`) live here, by key:

* ``("setup", key, setup, teardown)`` keeps ``setup()``'s value; calls for
  that key get it as their first argument; ``("drop", key)`` runs
  ``teardown(value)``; at EOF every state still held is torn down, newest
  first.
* ``("host", key, host)`` calls ``host(serve)`` on this same stack.  The host
  sets up whatever it needs and calls ``serve(value, info=None)``, which
  answers the host request with ``("ok", info)`` and serves every request on
  the host's stack until the engine drops that key or goes away (EOF); then
  ``serve`` returns and so, after its own cleanup, does ``host``.  The drop is
  answered once ``host`` has returned (with its error, if it raised).  A host
  that raises, or returns without serving, answers the host request with
  its error.

  A host that drives its own loop (a pytest session running one item per
  job, tearing it down only once the next one is known) calls
  ``serve(value, info, until=pred)`` repeatedly: each call serves requests
  until ``pred()`` is true after a request, and returns True then (False
  once the key is dropped or the engine is gone).  A job may answer later:
  :func:`defer_reply` (inside the job) returns a function that sends the
  reply; the host must call it before it serves again, replies go in the
  order of the requests.  A host that returns on its own (not dropped) sends
  nothing; a later drop is answered by the worker's own loop.

The engine's id of this worker (``job.worker_id``) is in the environment as
:data:`WORKER_ID_ENV` once a worker state was set up in it.
"""

from __future__ import annotations

import collections
import select
import sys
import types
import typing as T

import cloudpickle

from ._frames import dumps, recv_frame, send_frame

WORKER_ID_ENV = "EXECUTOR_WORKER_ID"
"""Environment variable holding the engine's id of this worker (set with the first worker state)."""

_MAX_FUNCTIONS = 256
"""Functions a worker keeps unpickled; the engine resends an evicted one when asked."""


def _error_reply(exc: BaseException) -> tuple[str, T.Any, str]:
    import traceback

    return ("err", exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _dumps(reply: tuple) -> bytes:
    try:
        return dumps(reply)
    except Exception as exc:  # unpicklable result or exception
        text = reply[2] if reply[0] == "err" else ""
        err = RuntimeError(f"cannot send the job's {'error' if reply[0] == 'err' else 'result'} "
                           f"back to the engine: {exc!r} (value: {reply[1]!r:.200})")
        return T.cast(bytes, cloudpickle.dumps(("err", err, text)))


def flush_std_streams() -> None:
    """Flush ``sys.stdout``/``sys.stderr``, whatever a job did to them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _call(func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> T.Any:
    """Call ``func``; run a returned coroutine to completion (asyncio is imported only then)."""
    result = func(*args, **kwargs)
    if isinstance(result, types.CoroutineType):
        import asyncio

        result = asyncio.run(result)
    return result


_serving: "Connection | None" = None
"""The connection whose request is being answered (for :func:`defer_reply`)."""


def defer_reply() -> T.Callable[[T.Any], None]:
    """Inside a job: do not reply when the job returns; reply with ``send(value)`` later.

    Only for jobs served by a hosted state's ``serve(..., until=)``: the host
    must send the reply before it serves the next request.
    """
    conn = _serving
    if conn is None:
        raise RuntimeError("defer_reply() is only available inside a job running in a process-pool worker")
    conn.deferred = True

    def send(value: T.Any) -> None:
        conn.send(("ok", value))

    return send


class StateMissingError(RuntimeError):
    """A job asked for a worker state this worker does not hold (its setup failed or it was dropped)."""


class Connection:
    """One worker's link to the engine, and what the worker keeps between requests."""

    def __init__(self, sock: T.Any) -> None:
        self.sock = sock
        self.eof = False
        self.inbox: collections.deque[T.Any] = collections.deque()
        self.skipped: set[int] = set()
        self.functions: "collections.OrderedDict[int, T.Any]" = collections.OrderedDict()
        self.states: dict[str, T.Any] = {}
        self.teardowns: dict[str, T.Any] = {}
        self.hosted: list[str] = []
        self.stepper: T.Any = None
        self.deferred = False  # the current job replies later (defer_reply)

    # ------------------------------------------------------------- reading
    def _read(self) -> T.Any:
        """One request (an exception instance if it cannot be unpickled); None at EOF."""
        try:
            data = recv_frame(self.sock)
        except (EOFError, OSError):
            self.eof = True
            return None
        try:
            return cloudpickle.loads(data)
        except BaseException as exc:
            return exc

    def next_request(self) -> T.Any:
        """The next request to answer, in order; None once the engine is gone."""
        if self.inbox:
            return self.inbox.popleft()
        while not self.eof:
            msg = self._read()
            if isinstance(msg, tuple) and msg and msg[0] == "skip":
                self.skipped.add(msg[1])
                continue
            return msg
        return None

    def drain(self) -> None:
        """Read the requests already waiting (prefetched ones), noting skips before their calls run."""
        while not self.eof and select.select([self.sock], [], [], 0)[0]:
            msg = self._read()
            if msg is None:
                return
            if isinstance(msg, tuple) and msg and msg[0] == "skip":
                self.skipped.add(msg[1])
            else:
                self.inbox.append(msg)

    def send(self, reply: tuple) -> bool:
        """Send one reply; False (and EOF noted) if the engine is gone."""
        flush_std_streams()
        try:
            send_frame(self.sock, _dumps(reply))
        except (OSError, EOFError):
            self.eof = True
            return False
        return True

    # ------------------------------------------------------------- serving
    def serve(self, hosted_key: str | None = None, until: T.Callable[[], bool] | None = None) -> bool:
        """Answer requests until EOF, or until ``hosted_key`` is dropped (then return to its host): False;
        or until ``until()`` is true after a request: True."""
        global _serving
        while True:
            msg = self.next_request()
            if msg is None:
                return False
            if isinstance(msg, tuple) and msg[:1] == ("drop",) and msg[1] == hosted_key:
                return False
            if isinstance(msg, tuple) and msg[:1] == ("host",):
                self.host(msg[1], msg[2], *msg[3:])
            else:
                outer, _serving = _serving, self
                try:
                    reply = self.answer(msg)
                finally:
                    _serving = outer
                if self.deferred and reply[0] != "err":
                    self.deferred = False
                elif not self.send(reply):
                    return False
                self.deferred = False
            if self.eof:
                return False
            if until is not None and until():
                return True

    def answer(self, msg: T.Any) -> tuple:
        """The reply to one ordinary request (every exception becomes an ``err`` reply)."""
        kind = ""
        try:
            if isinstance(msg, BaseException):
                raise msg
            kind = msg[0]
            if kind == "callc":
                return self.call_cached(*msg[1:])
            if kind == "call":
                return ("ok", _call(msg[1], msg[2], msg[3]))
            if kind == "setup":
                return self.setup(msg[1], msg[2], msg[3])
            if kind == "drop":
                return self.drop(msg[1])
            if kind == "gen":
                from executor.engine.job.utils import GeneratorStepper

                self.stepper = GeneratorStepper(msg[1](*msg[2], **msg[3]))
                return ("ok", None)
            if kind == "step":
                reply = T.cast(tuple, self.stepper.step(msg[1], msg[2]))
                if reply[0] == "return":
                    self.stepper = None
                return reply
            raise ValueError(f"unknown request {kind!r}")
        except BaseException as exc:  # report everything, SystemExit included
            if kind == "step":  # a generator that raised is finished
                self.stepper = None
            return _error_reply(exc)

    def call_cached(self, token: int, pickled: bytes | None, args: tuple, kwargs: dict,
                    key: str | None = None, seq: int | None = None) -> tuple:
        """Run a call of a function cached under ``token`` (with state ``key``'s value first)."""
        if pickled is not None:
            self.functions[token] = cloudpickle.loads(pickled)
            if len(self.functions) > _MAX_FUNCTIONS:
                self.functions.popitem(last=False)
        func = self.functions.get(token)
        if func is None:  # evicted: ask the engine to send it again
            return ("missing", token)
        self.functions.move_to_end(token)
        if seq is not None:
            self.drain()
            if seq in self.skipped:
                self.skipped.discard(seq)
                return ("skipped", None)
        if key is not None:
            if key not in self.states:
                raise StateMissingError(f"this worker holds no worker state {key!r}")
            args = (self.states[key], *args)
        return ("ok", _call(func, args, kwargs))

    def setup(self, key: str, setup: T.Callable[[], T.Any], teardown: T.Any) -> tuple:
        """Keep ``setup()``'s value under ``key`` (a key held already is kept as it is)."""
        if key not in self.states:
            value = _call(setup, (), {})
            self.states[key] = value
            self.teardowns[key] = teardown
        return ("ok", None)

    def drop(self, key: str) -> tuple:
        """Tear down state ``key`` (nothing to do if not held)."""
        if key in self.hosted:
            raise RuntimeError(f"worker state {key!r} is hosted by an outer stack and cannot be dropped now")
        teardown = self.teardowns.pop(key, None)
        value = self.states.pop(key, None)
        if teardown is not None:
            _call(teardown, (value,), {})
        return ("ok", None)

    def host(self, key: str, host: T.Callable[[T.Callable[..., None]], T.Any], worker_id: int | None = None) -> None:
        """Run a hosted state's ``host(serve)``; send the replies of its host and drop requests."""
        served = False
        dropped = False
        if worker_id is not None:
            import os

            os.environ[WORKER_ID_ENV] = str(worker_id)

        def serve(value: T.Any, info: T.Any = None, until: T.Callable[[], bool] | None = None) -> bool:
            nonlocal served, dropped
            if dropped:
                raise RuntimeError(f"worker state {key!r} was dropped: serve() cannot be called again")
            if served and until is None:
                raise RuntimeError("serve() may be called once per hosted worker state (or again with until=)")
            first, served = not served, True
            self.states[key] = value
            if first:
                self.hosted.append(key)
                if not self.send(("ok", info)):
                    dropped = True
                    return False
            more = self.serve(hosted_key=key, until=until)
            if not more:
                dropped = True
            return more

        error: BaseException | None = None
        try:
            _call(host, (serve,), {})
            if not served:
                error = RuntimeError(f"the host function of worker state {key!r} returned without calling serve()")
        except BaseException as exc:
            error = exc
        finally:
            if key in self.hosted:
                self.hosted.remove(key)
            self.states.pop(key, None)
        if served and not dropped and not self.eof:
            if error is not None:
                sys.stderr.write(f"worker state {key!r}: its host failed after serving: {error!r}\n")
            return  # it returned on its own: a later drop is answered by the worker's loop
        if self.eof:
            if error is not None and served:
                sys.stderr.write(f"worker state {key!r}: its host failed after serving: {error!r}\n")
            return
        self.send(("ok", None) if error is None else _error_reply(error))

    def teardown_all(self) -> None:
        """Tear down every state still held, newest first (errors are written to stderr)."""
        for key in reversed(list(self.teardowns)):
            teardown = self.teardowns.pop(key)
            value = self.states.pop(key, None)
            if teardown is None:
                continue
            try:
                _call(teardown, (value,), {})
            except BaseException as exc:
                sys.stderr.write(f"the teardown of worker state {key!r} failed: {exc!r}\n")
        flush_std_streams()


def serve(sock: T.Any) -> None:
    """Answer requests on the stream socket ``sock`` until the engine closes it, then tear states down."""
    conn = Connection(sock)
    try:
        conn.serve()
    finally:
        conn.teardown_all()
