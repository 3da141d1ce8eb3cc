"""DaskJob on real clusters: one shared LocalCluster, the engine's own lazy one, and a CLI-started one."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

distributed = pytest.importorskip("distributed")

from executor.engine import DaskJob, Engine, EngineSetting  # noqa: E402
from executor.engine.job.dask import DaskWorkerLostError  # noqa: E402

from _extend_helpers import live_descendants, new_descendants, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


async def double_async(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def worker_address() -> str:
    return str(distributed.get_worker().address)


def say(text: str) -> None:
    print(text)


def fail_with(message: str) -> None:
    raise ValueError(message)


def gen() -> Iterator[int]:
    yield 1


def block(path: str) -> None:
    """Say it started, then hold the worker's thread until ``path + '.release'`` exists (60 s at most).

    A cancelled dask task is forgotten, but its thread runs on: the test releases it, or the
    shared cluster's worker would stay busy for the tests after it.
    """
    Path(path).touch()
    release = Path(path + ".release")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def die(marker: str) -> None:
    Path(marker).touch()
    os._exit(1)


def test_engine_starts_closes_its_own_local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    before = live_descendants()
    running_dask: list[int] = []

    def count_running(job: Any, status: str) -> None:
        running_dask.append(sum(isinstance(j, DaskJob) for j in engine.jobs.running.values()))

    with Engine(EngineSetting(max_dask_jobs=1, cache_path=str(tmp_path / "cache"))) as engine:
        assert "dask" not in engine._backends  # nothing started with the engine
        # as upstream, reading the client before any DaskJob starts the engine's own cluster
        first = engine.dask_client
        assert isinstance(first, distributed.Client) and first.status == "running"
        assert first.cluster is engine.dask_backend.cluster
        host = first.scheduler.address.rpartition("://")[2].rpartition(":")[0]
        assert host in ("127.0.0.1", "localhost")
        engine.add_listener(count_running)
        jobs = [DaskJob(inc, args=(i,)) for i in range(4)]
        printer = DaskJob(say, args=("hello from dask",), redirect_out_err=True)
        engine.submit(*jobs, printer)
        engine.wait(timeout=60)
        assert [j.result() for j in jobs] == [1, 2, 3, 4]
        assert (printer.cache_dir / "stdout.txt").read_text() == "hello from dask\n"
        assert max(running_dask) == 1  # max_dask_jobs honoured
        client = engine.dask_client
        assert client is first and client.status == "running"  # the jobs ran on it
        assert len(client.scheduler_info()["workers"]) == (os.cpu_count() or 1)
        with pytest.raises(TypeError, match="generator functions cannot run on a dask worker"):
            engine.submit(DaskJob(gen))
        from executor.engine.launcher import launcher

        assert launcher(inc, job_type="dask")(41) == 42  # the launcher's "dask" job type
        failing = DaskJob(fail_with, args=("no luck",))
        engine.submit(failing)
        engine.wait_job(failing, timeout=60)
        assert isinstance(failing.exception(), ValueError)
    # the failure is the engine's to report (loguru): the cluster's workers add no log of their own
    assert "Compute Failed" not in capfd.readouterr().err
    assert engine.dask_client is None
    assert wait_until(lambda: not new_descendants(before), timeout=20), new_descendants(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no dask-worker-space litter


def test_async_client_on_a_running_cluster(dask_address: str, tmp_path: Path) -> None:
    async def main() -> tuple[list[Any], str]:
        client = distributed.Client(dask_address, asynchronous=True)
        async with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
            engine.dask_client = client
            assert engine.dask_client is client
            jobs = [DaskJob(inc, args=(1,)), DaskJob(double_async, args=(4,)), DaskJob(worker_address)]
            await engine.submit_async(*jobs)
            await engine.join(timeout=60)
            workers = set((await client.scheduler.identity())["workers"])
            results = [j.result() for j in jobs]
        assert client.status == "running"  # the user's client is not closed by the engine
        await client.close()
        return results, str(workers)

    results, workers = asyncio.run(main())
    assert results[:2] == [2, 8] and results[2] in workers


def test_cancel_cancels_the_dask_task(dask_address: str, tmp_path: Path) -> None:
    started = tmp_path / "started"

    async def main() -> str:
        client = distributed.Client(dask_address, asynchronous=True)
        async with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
            engine.dask_client = client
            job = DaskJob(block, args=(str(started),))
            await engine.submit_async(job)
            while not started.exists():
                await asyncio.sleep(0.01)
            await engine.cancel_async(job)
            status = job.status
            key = f"{job.name}-{job.id}-1"
            assert wait_until(lambda: key not in client.futures, timeout=10)
        await client.close()
        return status

    try:
        assert asyncio.run(main()) == "cancelled"
    finally:
        (tmp_path / "started.release").touch()  # the forgotten task's thread may end now


def test_synchronous_or_foreign_clients_are_refused(dask_address: str) -> None:
    engine = Engine()
    with distributed.Client(dask_address) as sync_client:
        with pytest.raises(ValueError, match="asynchronous"):
            engine.dask_client = sync_client
    with pytest.raises(ValueError, match="distributed.Client created with asynchronous=True, or a scheduler address"):
        engine.dask_client = 8786
    with pytest.raises(AttributeError):  # upstream's type (it reads `client.asynchronous`)
        engine.dask_client = object()
    with pytest.raises(ValueError, match="'localhost' is not a scheduler address: give 'tcp://host:port'"):
        engine.dask_client = "localhost"


def test_sync_engine_runs_on_a_cluster_given_by_address(dask_address: str, tmp_path: Path) -> None:
    """Sync code cannot make an asynchronous client (no running loop): the address is enough."""
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        engine.dask_client = dask_address
        jobs = [DaskJob(inc, args=(1,)), DaskJob(worker_address)]
        engine.submit(*jobs)
        assert engine.wait(timeout=60)
        client = engine.dask_client
        assert client is not None and client.scheduler.address == dask_address
        assert jobs[0].result() == 2 and jobs[1].result() in client.scheduler_info()["workers"]
    assert client.status == "closed"  # the engine's own client, closed by stop()
    with distributed.Client(dask_address, timeout=10) as check:  # the cluster itself is left running
        assert check.submit(inc, 41).result(timeout=30) == 42


@pytest.fixture
def cli_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and a worker started as `dask scheduler` / `dask worker` processes on 127.0.0.1."""
    dask_cli = shutil.which("dask", path=str(Path(sys.executable).parent))
    if dask_cli is None:
        pytest.skip("the dask command line is not installed")
    before = live_descendants()
    scheduler_file = tmp_path / "scheduler.json"
    # a worker lost mid-task fails the task at once, so the job's own retries are what is tested
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
           # the scheduler and worker unpickle this module's functions: let them import it
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    common = dict(cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                  start_new_session=True)
    scheduler = subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(scheduler_file)], **common)  # type: ignore[call-overload]
    procs = [scheduler]
    try:
        assert wait_until(scheduler_file.exists, timeout=30)
        worker = subprocess.Popen([dask_cli, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                   "--no-dashboard", "--local-directory", str(tmp_path / "scratch")], **common)  # type: ignore[call-overload]
        procs.append(worker)
        address = __import__("json").loads(scheduler_file.read_text())["address"]
        yield address
    finally:
        for proc in procs:
            try:  # each CLI process leads its own group (its nanny and worker): stop it whole
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert wait_until(lambda: not new_descendants(before), timeout=20), new_descendants(before)


def test_worker_lost_mid_job_fails_clearly_and_retries_apply(cli_cluster: str, tmp_path: Path) -> None:
    marker = tmp_path / "died"

    async def make_client() -> Any:
        return await distributed.Client(cli_cluster, asynchronous=True)

    # a sync engine runs its own loop: a client made on another loop is only read for its address
    other_loop = asyncio.new_event_loop()
    foreign = other_loop.run_until_complete(make_client())
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as engine:
        engine.dask_client = foreign
        ok = DaskJob(inc, args=(41,))
        engine.submit(ok)
        engine.wait_job(ok, timeout=60)
        assert ok.result() == 42
        job = DaskJob(die, args=(str(marker),), retries=1)
        engine.submit(job)
        engine.wait_job(job, timeout=90)
    other_loop.run_until_complete(foreign.close())
    other_loop.close()
    error = job.exception()
    assert job.status == "failed" and job.attempts == 2
    assert isinstance(error, DaskWorkerLostError) and "died before it finished" in str(error)


def test_launcher_runs_a_cmd2func_command_on_a_dask_worker(dask_address: str, tmp_path: Path) -> None:
    from cmd2func import cmd2func

    from executor.engine.job.extend import SubprocessJob
    from executor.engine.launcher import launcher

    @cmd2func
    def write(path: str) -> str:
        return f"echo written > {path}"

    out = tmp_path / "out.txt"

    async def main() -> Any:
        client = distributed.Client(dask_address, asynchronous=True)
        async with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
            engine.dask_client = client
            write_on_dask = launcher(write, job_type="dask", async_mode=True, engine=engine)
            job = await write_on_dask.submit(str(out))
            await engine.join(timeout=60)
        await client.close()
        return job

    job = asyncio.run(main())
    assert isinstance(job, SubprocessJob) and isinstance(job, DaskJob)  # job_type's backend, as documented
    assert job.result() == 0 and out.read_text() == "written\n"


def _open_schedulers() -> set[Any]:
    return {s for s in list(distributed.Scheduler._instances) if s.status.name != "closed"}


@pytest.mark.parametrize("then", ["stop", "cancel-then-run"])
def test_a_job_cancelled_while_the_local_cluster_starts_does_not_abandon_it(
        then: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from executor.engine.log import logger

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the cluster's scratch dirs go here
    starts: list[str] = []
    sink = logger.add(lambda message: starts.append(str(message)), filter=lambda r: "LocalCluster" in r["message"])
    before, open_before = live_descendants(), _open_schedulers()
    try:
        engine = Engine(EngineSetting(cache_path=str(tmp_path / "cache")))
        engine.dask_backend.n_workers = 1
        engine.start()
        try:
            first = DaskJob(inc, args=(1,))
            engine.submit(first)
            engine.cancel(first)  # the cluster is still starting: the job only stops waiting for it
            assert first.status == "cancelled"
            if then == "cancel-then-run":
                second = DaskJob(inc, args=(2,))
                engine.submit(second)
                engine.wait_job(second, timeout=60)
                assert second.result() == 3
        finally:
            engine.stop()
    finally:
        logger.remove(sink)
    assert len(starts) == 1, starts  # one cluster for the engine, not one per waiting job
    assert _open_schedulers() <= open_before  # the scheduler started for the engine was closed by stop()
    assert wait_until(lambda: not new_descendants(before), timeout=20), new_descendants(before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("executor-dask-")]


ASYNC_WITHOUT_STOP = """
import asyncio
from executor.engine import DaskJob, Engine

def add(a, b):
    return a + b

async def main():
    engine = Engine()  # the seed's async use: no start(), no stop()
    engine.dask_backend.n_workers = 1
    job = DaskJob(add, args=(1, 2))
    await engine.submit_async(job)
    await engine.join(timeout=60)
    print(job.result())

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_async_use_without_stop_leaves_no_scratch_folder(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = tmp_path / "script.py"
    script.write_text(ASYNC_WITHOUT_STOP)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "TMPDIR": str(temp)},
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0 and done.stdout.splitlines() == ["3"], done.stderr
    assert not [p.name for p in temp.iterdir() if p.name.startswith("executor-dask-")]


def _killer_of_its_worker(runs: str) -> None:
    with open(runs, "a") as log:
        log.write("ran\n")
    os.kill(os.getpid(), signal.SIGKILL)  # the dask worker process itself


def test_a_local_dask_cluster_runs_no_task_again_after_its_worker_died(tmp_path: Path) -> None:
    # the pytest plugin's sessions are host tasks on it: one run a second time, after its worker
    # was killed, would live on beside the session the controller started in its place
    from executor.engine.backend.dask import LocalDaskCluster

    runs = tmp_path / "runs"
    cluster = LocalDaskCluster(1)
    try:
        with cluster.client() as client:
            future = client.submit(_killer_of_its_worker, str(runs), pure=False)
            with pytest.raises(distributed.scheduler.KilledWorker):
                future.result(timeout=60)
    finally:
        cluster.close()
    assert runs.read_text().splitlines() == ["ran"]


def _has_profiler(dask_worker: Any) -> bool:
    return "profile" in dask_worker.periodic_callbacks


def test_a_local_cluster_passes_its_settings_to_its_workers() -> None:
    """``config``: the plugin turns the workers' statistical profiler off (it would only sample our waits)."""
    from executor.engine.backend.dask import LocalDaskCluster

    for config, profiling in (({}, True), ({"distributed.worker.profile.enabled": False}, False)):
        cluster = LocalDaskCluster(1, config=config)
        try:
            with cluster.client() as client:
                assert list(client.run(_has_profiler).values()) == [profiling]
        finally:
            cluster.close()


def _worker_settings(dask_worker: Any) -> tuple[bool, str]:
    import dask

    return "profile" in dask_worker.periodic_callbacks, str(dask.config.get("temporary-directory"))


def test_a_local_cluster_started_with_some_workers_grows_to_all_with_the_same_settings() -> None:
    """``start_workers``: returned after the first; ``grow`` starts the rest, made with the cluster's settings."""
    from executor.engine.backend.dask import LocalDaskCluster

    cluster = LocalDaskCluster(3, config={"distributed.worker.profile.enabled": False}, start_workers=1)
    try:
        with cluster.client() as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1
            cluster.grow(timeout=60)
            settings = list(client.run(_worker_settings).values())
        assert settings == [(False, cluster.scratch)] * 3
    finally:
        cluster.close()


def test_without_cryptography_a_local_cluster_is_refused_before_it_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # distributed would fail half-way through LocalCluster(security=True) and leave an unclosed cluster
    from executor.engine.backend.dask import LocalDaskCluster

    monkeypatch.setitem(sys.modules, "cryptography", None)  # import cryptography now raises ImportError
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ImportError, match=r"needs the 'cryptography' package: pip install 'pytest-executor\[dask\]'"):
        LocalDaskCluster(1)
    assert list(tmp_path.iterdir()) == []  # no scratch folder, no fork server (it would have made a pymp-* folder)


def _square(x: int) -> int:
    return x * x


def test_closing_a_local_cluster_ends_its_fork_server_and_the_next_cluster_starts_its_own() -> None:
    """The fork server is killed at close (nothing to save in it): reaped at once, and a later cluster forks again."""
    import multiprocessing.forkserver

    import psutil

    from executor.engine.backend.dask import LocalDaskCluster

    pids = []
    for value in (3, 4):
        cluster = LocalDaskCluster(1)
        try:
            pids.append(multiprocessing.forkserver._forkserver._forkserver_pid)
            with cluster.client() as client:
                assert client.submit(_square, value, pure=False).result(timeout=60) == value * value
        finally:
            cluster.close()
        assert not psutil.pid_exists(pids[-1]), "the fork server outlived its cluster (or was left a zombie)"
    assert None not in pids and pids[0] != pids[1]
