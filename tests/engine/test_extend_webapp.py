"""WebappJob with real HTTP servers checked by real HTTP requests; ports must be free afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import typing as T
import urllib.request
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.extend import ServerNotReady, WebappJob

from _extend_helpers import leaves_no_process, listeners, listening, wait_until

PY = sys.executable
TEMPLATE = f"{PY} -m http.server -b {{ip}} {{port}}"


def run_httpd(ip: str, port: int) -> None:
    HTTPServer((ip, port), SimpleHTTPRequestHandler).serve_forever()


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.chdir(tmp_path)  # http.server serves the working directory: keep it a temp one
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as eng:
        yield eng


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every test must leave no process it started behind (workers of stopped engines included)."""
    with leaves_no_process():
        yield


@pytest.mark.parametrize(
    ("target", "base"),
    [(run_httpd, ProcessJob), (TEMPLATE, ProcessJob), (TEMPLATE, LocalJob), (TEMPLATE, ThreadJob)],
    ids=["function-process", "template-process", "template-local", "template-thread"],
)
def test_serves_once_submitted_and_cancel_frees_the_port(engine: Engine, target: object, base: type) -> None:
    job = WebappJob(target, base_class=base)  # type: ignore[arg-type]
    engine.submit(job)
    # submit returned: the server answers right away
    assert job.status == "running" and job.ready and job.port is not None
    assert get(job.url) == 200
    engine.cancel(job)
    assert job.status == "cancelled" and not job.ready
    assert wait_until(lambda: not listening(T.cast(int, job.port)), timeout=10)


def test_given_port_is_used_and_engine_stop_frees_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        job = WebappJob(TEMPLATE, port=port)
        engine.submit(job)
        assert job.url == f"http://127.0.0.1:{port}" and get(job.url) == 200
    assert job.status == "cancelled"
    assert wait_until(lambda: not listening(port), timeout=10)


def test_busy_port_fails_the_job_clearly(engine: Engine) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        job = WebappJob(run_httpd, port=busy.getsockname()[1])
        engine.submit(job)
        engine.wait_job(job, timeout=30)
    assert job.status == "failed" and "already in use" in str(job.exception())


def test_server_exiting_before_answering_fails(engine: Engine) -> None:
    job = WebappJob("echo {ip} {port} >/dev/null; exit 2", base_class=LocalJob)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert isinstance(job.exception(), ServerNotReady) and "before answering" in str(job.exception())


def test_silent_server_times_out(engine: Engine) -> None:
    job = WebappJob("sleep 30 # {ip} {port}", base_class=LocalJob, ready_timeout=0.3)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert isinstance(job.exception(), ServerNotReady) and "within 0.3 s" in str(job.exception())


async def serve_async(ip: str, port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, ip, port)
    async with server:
        await server.serve_forever()


def test_async_function_on_local_job_and_submit_async(tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        async with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
            job = WebappJob(serve_async, base_class=LocalJob)
            await engine.submit_async(job)
            assert job.ready
            status = await asyncio.get_running_loop().run_in_executor(None, get, job.url)
            await engine.cancel_all_async()
            return status, T.cast(int, job.port)

    status, port = asyncio.run(main())
    assert status == 200 and not listening(port)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("python -m http.server",), {}, ValueError, r"lacks \{ip\} and \{port\}"),
        (("serve {port}",), {}, ValueError, r"lacks \{ip\}"),
        (("serve {ip} {port} {root}",), {}, ValueError, "unknown placeholder"),
        ((42,), {}, TypeError, "func_or_template must be a function"),
        ((run_httpd,), {"ip": "8.8.8.8"}, ValueError, "not an address of this machine"),
        ((run_httpd,), {"ip": "example"}, ValueError, "not an IP address"),
        ((run_httpd,), {"port": 70000}, ValueError, "port must be from 1 to 65535"),
        ((run_httpd,), {"port": "80"}, TypeError, "port must be an int"),
        ((run_httpd,), {"base_class": ThreadJob}, ValueError, "thread cannot be stopped"),
        ((run_httpd,), {"base_class": LocalJob}, ValueError, "must be a coroutine function"),
        ((run_httpd,), {"ready_timeout": 0}, ValueError, "ready_timeout"),
    ],
)
def test_bad_input_is_refused_at_construction(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        WebappJob(*args, **kwargs)


def test_a_web_app_function_on_a_dask_worker_is_refused_naming_the_base() -> None:
    from executor.engine import DaskJob

    with pytest.raises(ValueError, match="cannot run on a DaskJob: it runs on a thread"):
        WebappJob(run_httpd, base_class=DaskJob)


def test_local_addresses_are_accepted() -> None:
    for ip in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):
        assert WebappJob(TEMPLATE, ip=ip).ip == ip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["function", "template"])
def test_ctrl_c_on_a_script_leaves_nothing_listening(tmp_path: Path, kind: str) -> None:
    """Like seed examples 04/05: a script serving until interrupted with SIGINT."""
    port = free_port()
    target = "run_simple_httpd" if kind == "function" else repr("python -m http.server -b {ip} {port}")
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(f"""
        from http.server import HTTPServer, SimpleHTTPRequestHandler
        from executor.engine import Engine
        from executor.engine.job.extend import WebappJob

        def run_simple_httpd(ip, port):
            HTTPServer((ip, port), SimpleHTTPRequestHandler).serve_forever()

        with Engine() as engine:
            job = WebappJob({target}, ip="127.0.0.1", port={port})
            engine.submit(job)
            print("serving", flush=True)
            engine.wait()
    """))
    env = {**os.environ, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([PY, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    try:
        assert proc.stdout is not None
        assert "serving\n" in iter(proc.stdout.readline, "")  # the server itself may print first
        assert get(f"http://127.0.0.1:{port}") == 200
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert wait_until(lambda: not listening(port), timeout=10)
    finally:
        if proc.poll() is None:  # the test failed early: kill the script, then its server if it survived
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for server in listeners(port):
                server.kill()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_launcher_webapp_job_type(engine: Engine) -> None:
    from executor.engine.launcher import launcher

    serve = launcher(run_httpd, job_type="webapp")
    job = serve.submit(port=free_port())
    assert isinstance(job, WebappJob) and get(job.url) == 200
    engine.cancel(job)
    assert wait_until(lambda: not listening(T.cast(int, job.port)), timeout=10)


def test_launcher_serves_a_cmd2func_template_as_a_web_app(engine: Engine) -> None:
    from cmd2func import cmd2func

    from executor.engine.launcher import launcher

    @cmd2func
    def http_server(directory: str) -> str:
        return f"{sys.executable} -m http.server -d {directory} -b {{ip}} {{port}}"

    job = launcher(http_server, job_type="webapp").submit(".")
    assert isinstance(job, WebappJob) and get(job.url) == 200
    engine.cancel(job)
    assert wait_until(lambda: not listening(T.cast(int, job.port)), timeout=10)
