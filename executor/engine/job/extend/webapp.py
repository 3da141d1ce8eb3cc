"""WebappJob: serve a web application on a local port for as long as the job runs."""

from __future__ import annotations

import asyncio
import errno
import inspect
import string
import threading
import typing as T

from ..base import Job
from ..condition import Condition
from ..local import LocalJob
from ..process import ProcessJob
from ..thread import ThreadJob
from ..utils import CallOptions
from ._command import CommandSpec, run_command_blocking
from ._ports import NonLocalAddress, check_local_ip, check_port, pick_free_port, port_is_free, wait_until_listening
from ._variants import STANDARD_BASES, CommandRunner, signature_of_init, variant

if T.TYPE_CHECKING:  # pragma: no cover
    from ...core import Engine

__all__ = ["LauncherFunc", "NonLocalAddress", "ServerNotReady", "WebappJob", "check_template"]

LauncherFunc = T.Callable[[str, int], None]
"""A web app function: serves on ``(ip, port)`` until stopped."""

#: extra seconds ``submit`` waits past ``ready_timeout`` (the attempt itself gives up at ready_timeout)
_SETTLE_MARGIN = 5.0
#: the placeholders a command template must contain
TEMPLATE_FIELDS = ("ip", "port")


class ServerNotReady(RuntimeError, OSError):
    """The web app exited, or did not answer on its port in time (an ``IOError`` too, as upstream)."""


def check_template(template: str) -> str:
    """Return ``template`` if it uses ``{ip}`` and ``{port}`` and nothing else, else raise ``ValueError``."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"command template {template!r} is malformed: {error}") from None
    missing = [f"{{{name}}}" for name in TEMPLATE_FIELDS if name not in fields]
    if missing:
        raise ValueError(
            f"command template {template!r} lacks {' and '.join(missing)}: the job fills in the address "
            "and port it serves on, e.g. 'python -m http.server -b {ip} {port}'"
        )
    unknown = sorted(fields.difference(TEMPLATE_FIELDS))
    if unknown:
        raise ValueError(
            f"command template {template!r} uses unknown placeholder(s) {unknown}: only {{ip}} and {{port}} "
            "are filled in (write literal braces as '{{' and '}}')"
        )
    return template


class WebappJob(CommandRunner):
    """A job that runs a web server on ``ip``:``port`` until it is cancelled.

    Args:
        web_launcher: a function ``f(ip, port)`` that serves forever, or a
            shell command template with ``{ip}`` and ``{port}``, e.g.
            ``"python -m http.server -b {ip} {port}"``.
        ip: a local address to serve on (loopback, ``0.0.0.0`` or an
            interface of this machine; another address raises a
            :class:`NonLocalAddress`, a ``ValueError`` and, as upstream, a
            ``NotImplementedError``).
        port: the port; None picks a free one (read it from ``job.port``
            once the job runs).
        base_class: :class:`ProcessJob` (default; the server lives in a worker
            process, stopped by killing it), :class:`~executor.engine.job.local.LocalJob`
            (templates: the command is watched from the event loop; functions
            must then be coroutine functions) or :class:`ThreadJob`
            (templates only: a thread cannot be stopped).
        check_times, check_delta: upstream's readiness budget: the server
            must answer on its port within ``check_times * check_delta``
            seconds (6 by default).  Ours checks continuously within that time.
        callback, error_callback, retries, retry_time_delta, name, condition,
        wait_time_delta, redirect_out_err: as for :class:`Job` (upstream's order).
        ready_timeout: seconds the server has to answer on its port (overrides
            ``check_times * check_delta``).
        **job_kwargs: the other :class:`Job` arguments; ``args``/``kwargs``
            go to the function after ``ip`` and ``port``.

    The job starts the server, then connects to the port until it answers;
    ``engine.submit`` returns only then, with ``job.ready`` true and
    ``job.url`` serving. If the server exits first, or stays silent for
    ``ready_timeout`` seconds, the attempt fails. Cancelling the job (or
    stopping the engine) stops the server and frees the port.
    """

    repr_attrs = [
        ("status", lambda self: self.status),
        ("id", lambda self: self.id),
        ("addr", lambda self: f"{self.ip}:{self.port}"),
        ("base_class", lambda self: getattr(self.base_class, "__name__", self.base_class)),
        ("condition", lambda self: self.condition),
        ("retry_remain", lambda self: self.retry_remain),
    ]

    def __new__(cls, *args: T.Any, **kwargs: T.Any) -> "WebappJob":
        if cls is WebappJob:
            cls = job_class_on(kwargs.get("base_class", args[3] if len(args) > 3 else ProcessJob))
        return T.cast("WebappJob", super().__new__(cls))

    def __init__(
        self,
        web_launcher: T.Union[str, T.Callable[..., T.Any], None] = None,
        ip: str = "127.0.0.1",
        port: T.Optional[int] = None,
        base_class: type[Job] = ProcessJob,
        check_times: int = 6,
        check_delta: float = 1.0,
        callback: T.Optional[T.Callable[[T.Any], T.Any]] = None,
        error_callback: T.Optional[T.Callable[[BaseException], T.Any]] = None,
        retries: int = 0,
        retry_time_delta: float = 0.0,
        name: T.Optional[str] = None,
        condition: T.Optional[Condition] = None,
        wait_time_delta: float = 0.01,
        redirect_out_err: T.Union[bool, str] = False,
        ready_timeout: T.Optional[float] = None,
        **job_kwargs: T.Any,
    ) -> None:
        func_or_template = job_kwargs.pop("func_or_template", web_launcher)  # this engine's earlier name
        if func_or_template is None:
            raise TypeError("WebappJob needs web_launcher: a function f(ip, port) or a template with {ip} and {port}")
        for key, value in (("check_times", check_times), ("check_delta", check_delta)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{key} must be a number > 0, got {value!r}")
        if ready_timeout is None:
            ready_timeout = check_times * check_delta
        self.check_times, self.check_delta = check_times, check_delta
        job_kwargs.update(callback=callback, error_callback=error_callback, retries=retries,
                          retry_time_delta=retry_time_delta, condition=condition, wait_time_delta=wait_time_delta,
                          redirect_out_err=redirect_out_err)
        if name is not None:
            job_kwargs["name"] = name
        kwargs = dict(job_kwargs.pop("kwargs", None) or {})
        # the launcher passes call arguments as kwargs: ip/port among them choose the address
        ip = kwargs.pop("ip", ip)
        port = kwargs.pop("port", port)
        if isinstance(func_or_template, str):
            self.template: T.Optional[str] = check_template(func_or_template)
            func: T.Callable[..., T.Any] = run_command_blocking
            if job_kwargs.get("args") or kwargs:
                raise TypeError("a command template takes no args/kwargs: put everything in the template")
            job_kwargs.setdefault("name", func_or_template.split()[0] if func_or_template.split() else "webapp")
        elif callable(func_or_template):
            self.template = None
            func = func_or_template
            _check_function_base(func, base_class)
        else:
            raise TypeError(
                "web_launcher: func_or_template must be a function f(ip, port) or a command template string "
                f"with {{ip}} and {{port}}, got {type(func_or_template).__name__}: {func_or_template!r}"
            )
        if "func" in job_kwargs:
            raise TypeError("WebappJob takes the function as its first argument, not func=")
        if not isinstance(ready_timeout, (int, float)) or isinstance(ready_timeout, bool) or ready_timeout <= 0:
            raise ValueError(f"ready_timeout must be a number of seconds > 0, got {ready_timeout!r}")
        self.ip = check_local_ip(ip)
        self.requested_port = check_port(port)
        self.port: T.Optional[int] = self.requested_port
        self.base_class = base_class
        self.ready_timeout = float(ready_timeout)
        self._ready = threading.Event()
        self._settled = threading.Event()
        super().__init__(func, kwargs=kwargs, **job_kwargs)
        self.web_launcher = func_or_template
        if self.template is not None:
            self.attrs["cmd"] = self.template

    # --------------------------------------------------------------- public
    @property
    def url(self) -> str:
        """``http://ip:port`` of the server (the port is known once the job runs)."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}"

    @property
    def ready(self) -> bool:
        """True while the current attempt's server answers on its port."""
        return self._ready.is_set()

    def wait_started(self) -> None:
        """Block until the server answers or the attempt ended (``engine.submit`` calls this)."""
        engine = self.engine
        if engine is not None and engine._in_loop_thread():
            return  # the loop thread must keep running for the server to start
        self._settled.wait(self.ready_timeout + _SETTLE_MARGIN)

    async def wait_started_async(self) -> None:
        """Async form of :meth:`wait_started` (``engine.submit_async`` awaits this)."""
        if self._settled.is_set():
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._settled.wait, self.ready_timeout + _SETTLE_MARGIN)

    # ---------------------------------------------------------------- hooks
    def prepare(self, engine: "Engine") -> None:
        """A (re)submitted job has not started yet: forget the previous attempt's readiness."""
        super().prepare(engine)
        self._ready.clear()
        self._settled.clear()

    def call_options(self) -> CallOptions:
        """Templates set their streams on the process; functions get the usual options."""
        return CallOptions() if self.template is not None else super().call_options()

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Start the server, wait until it answers, then serve until cancelled (or until it exits)."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        self._ready.clear()
        self._settled.clear()
        try:
            ip, port = self.ip, self._claim_port()
        except BaseException:
            self._settled.set()
            raise
        serving = asyncio.ensure_future(self._serve(func, args, kwargs, ip, port))
        try:
            answered = await wait_until_listening(
                ip, port, self.ready_timeout, gave_up=serving.done,
                pause=lambda delay: asyncio.wait({serving}, timeout=delay))
            if not answered:
                if serving.done():
                    outcome = _outcome(serving)
                    raise ServerNotReady(f"web app {self.name} exited ({outcome}) before answering on {self.url}")
                raise ServerNotReady(f"web app {self.name} did not answer on {self.url} within {self.ready_timeout} s")
            self._ready.set()
            self._settled.set()
            return await asyncio.shield(serving)
        finally:
            self._ready.clear()
            self._settled.set()
            if not serving.done():
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)

    # ------------------------------------------------------------ internals
    def _claim_port(self) -> int:
        if self.requested_port is None:
            self.port = pick_free_port(self.ip)
            return self.port
        self.port = self.requested_port
        if not port_is_free(self.ip, self.port):
            raise OSError(errno.EADDRINUSE, f"port {self.port} on {self.ip} is already in use; "
                                            "stop whatever listens there or pass port=None to pick a free one")
        return self.port

    async def _serve(self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict, ip: str, port: int) -> T.Any:
        if self.template is not None:
            cmd = self.template.format(ip=ip, port=port)
            return await self.run_command(lambda pgid_path: self._spec(cmd, pgid_path))
        return await super().run_function(func, (ip, port, *args), kwargs)

    def _spec(self, cmd: str, pgid_path: T.Optional[str]) -> CommandSpec:
        stdout_path, stderr_path = self.output_paths()
        return CommandSpec(cmd, None, stdout_path, stderr_path, {}, pgid_path)

    def __getstate__(self) -> dict[str, T.Any]:
        state = super().__getstate__()
        state.pop("_ready", None)
        state.pop("_settled", None)
        return state

    def __setstate__(self, state: dict[str, T.Any]) -> None:
        super().__setstate__(state)
        self._ready = threading.Event()
        self._settled = threading.Event()


def _outcome(task: "asyncio.Future[T.Any]") -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return f"returned {task.result()!r}" if error is None else f"raised {error!r}"


def _check_function_base(func: T.Callable[..., T.Any], base_class: object) -> None:
    if isinstance(base_class, type) and (
            issubclass(base_class, ThreadJob) or getattr(base_class, "resource_kind", None) == "dask"):
        raise ValueError(
            f"a web app function cannot run on a {base_class.__name__}: it runs on a thread (of this process "
            "or of a dask worker) and a thread cannot be stopped, so the server would keep the port; "
            "use ProcessJob (default), or a command template"
        )
    if isinstance(base_class, type) and issubclass(base_class, ProcessJob):
        return
    if isinstance(base_class, type) and issubclass(base_class, LocalJob) and not inspect.iscoroutinefunction(func):
        raise ValueError(
            "a web app function on LocalJob must be a coroutine function (it shares the engine's event "
            "loop); use ProcessJob (default) for a blocking server"
        )


def job_class_on(base_class: object) -> type[WebappJob]:
    """The WebappJob class that runs its server the way ``base_class`` runs jobs."""
    return variant(WebappJob, base_class)


for _base in STANDARD_BASES:
    job_class_on(_base)


WebappJob.__signature__ = signature_of_init(WebappJob)  # type: ignore[attr-defined]
