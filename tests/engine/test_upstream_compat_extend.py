"""executor-engine 0.3.3's WebappJob arguments, checks and template launching, and its launcher API."""

from __future__ import annotations

import sys
import typing as T
import urllib.request
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, LocalJob, ThreadJob
from executor.engine.job.extend import SubprocessJob, WebappJob
from executor.engine.job.extend.webapp import ServerNotReady
from executor.engine.launcher import AsyncLauncher, LauncherBase, SyncLauncher, launcher

from _engine_helpers import add
from _extend_helpers import leaves_no_process

TEMPLATE = f"{sys.executable} -m http.server -b {{ip}} {{port}}"


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> T.Iterator[Engine]:
    monkeypatch.chdir(tmp_path)  # http.server serves the working directory: keep it a temp one
    with leaves_no_process():
        with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as eng:
            yield eng


def test_webapp_checks_as_upstream() -> None:
    with pytest.raises(NotImplementedError, match="not an address of this machine"):
        WebappJob(TEMPLATE, ip="8.8.8.8")
    with pytest.raises(ValueError, match=r"lacks \{port\}"):
        WebappJob("serve --host {ip}")
    with pytest.raises(TypeError, match="func_or_template must be a function"):
        WebappJob(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="check_times must be a number > 0"):
        WebappJob(TEMPLATE, check_times=0)
    job = WebappJob(TEMPLATE, "127.0.0.1", 8123, LocalJob, 3, 0.5, name="site")  # upstream's positional order
    assert (job.ip, job.port, job.base_class, job.ready_timeout, job.name) == ("127.0.0.1", 8123, LocalJob, 1.5,
                                                                              "site")
    assert job.attrs == {"cmd": TEMPLATE} and job.web_launcher == TEMPLATE
    assert repr(job) == f"<WebappJob status=created id={job.id} addr=127.0.0.1:8123 base_class=LocalJob>"


def test_webapp_from_a_template_serves_and_one_that_never_listens_fails_after_its_checks(engine: Engine) -> None:
    site = WebappJob(TEMPLATE, check_times=20, check_delta=1.0)
    silent = WebappJob("sleep 30 # {ip} {port}", base_class=LocalJob, check_times=2, check_delta=0.1)
    engine.submit(site, silent)
    with urllib.request.urlopen(f"http://127.0.0.1:{site.port}/", timeout=10) as response:
        assert response.status == 200
    engine.wait_job(silent, timeout=30)
    error = silent.exception()
    assert isinstance(error, ServerNotReady) and isinstance(error, IOError) and "within 0.2 s" in str(error)
    engine.cancel(site)


def test_launchers_take_upstreams_arguments() -> None:
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    base = LauncherBase(double, None, "local", "dbl", None, ["math"], {"retries": 1})
    assert (base.name, base.description, base.tags, base.job_attrs) == ("dbl", "Twice x.", ["math"],
                                                                        {"name": "dbl", "retries": 1})
    assert base.target_func is double and not base.async_mode
    with pytest.raises(NotImplementedError):
        base(1)
    sync = launcher(double, None, False, "local", "dbl", tags=["math"], job_attrs={"retries": 1})
    assert isinstance(sync, SyncLauncher) and sync.async_mode is False
    job = sync.create_job((2,), {}, retries=3)
    assert (job.name, job.retries) == ("dbl", 3)
    asynchronous = sync.to_async()
    assert isinstance(asynchronous, AsyncLauncher) and asynchronous.async_mode is True
    assert asynchronous.job_attrs == sync.job_attrs and asynchronous.tags == ["math"]
    with Engine() as engine:
        assert sync(21) == 42 and engine.jobs.done.values()[0].name == "dbl"


def test_cmd2func_launchers_report_upstreams_job_type(engine: Engine) -> None:
    from cmd2func import cmd2func

    @cmd2func
    def echo(text: str) -> str:
        return f"echo {text}"

    @cmd2func
    def serve() -> str:
        return TEMPLATE

    plain, on_thread, site = launcher(echo), launcher(echo, job_type="thread"), launcher(serve, job_type="webapp")
    assert (plain.job_type, on_thread.job_type, site.job_type) == ("subprocess", "subprocess", "webapp")
    job = on_thread.submit("hi")
    engine.wait_job(job, timeout=30)
    assert isinstance(job, SubprocessJob) and isinstance(job, ThreadJob) and job.result() == 0
    web = site.submit()
    assert isinstance(web, WebappJob) and web.status == "running"
    engine.cancel(web)
    assert launcher(add, job_type="local", owner="me").create_job((1, 2), {}).attrs == {"owner": "me"}
