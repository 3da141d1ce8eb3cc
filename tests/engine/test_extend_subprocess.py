"""SubprocessJob with real shell commands on every base class; cmd2func through the launcher."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from cmd2func import cmd2func

from executor.engine import Engine, EngineSetting, LocalJob, ProcessJob, ThreadJob
from executor.engine.job.extend import CommandFailed, SubprocessJob
from executor.engine.job.extend.subprocess import job_class_on
from executor.engine.launcher import launcher

from _extend_helpers import leaves_no_process, processes_with, unique_sleep, wait_until

BASES = [LocalJob, ThreadJob, ProcessJob]
PY = sys.executable


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as eng:
        yield eng


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every test must leave no process it started behind (workers of stopped engines included)."""
    with leaves_no_process():
        yield


@pytest.mark.parametrize("base", BASES)
def test_result_is_return_code_and_stdout_reaches_ours(engine: Engine, base: type,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    job = SubprocessJob(f"{PY} -c 'print(1 + 2)'", base_class=base)
    assert isinstance(job, SubprocessJob) and isinstance(job, base)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "done" and job.result() == 0
    assert capfd.readouterr().out.splitlines() == ["3"]


@pytest.mark.parametrize("base", BASES)
def test_nonzero_exit_fails_with_code_and_stderr_tail(engine: Engine, base: type,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    job = SubprocessJob("echo first >&2; echo 'it broke' >&2; exit 3", base_class=base)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    error = job.exception()
    assert job.status == "failed" and isinstance(error, CommandFailed)
    assert error.returncode == 3 and error.stderr_tail == "first\nit broke"
    assert "exited with code 3" in str(error) and "it broke" in str(error)
    assert "it broke" in capfd.readouterr().err  # stderr is relayed, not swallowed


@pytest.mark.parametrize("base", BASES)
def test_commands_read_an_empty_stdin_unless_given_one(engine: Engine, base: type, tmp_path: Path) -> None:
    given = tmp_path / "input.txt"
    given.write_text("from a file\n")
    jobs = [SubprocessJob(f"cat > {tmp_path}/out{i}.txt", base_class=base) for i in range(3)]
    # an open file of ours cannot reach a worker process: ProcessJob refuses it (see the bad-arguments test)
    stdin = subprocess.DEVNULL if base is ProcessJob else open(given)
    piped = SubprocessJob(f"cat > {tmp_path}/piped.txt", base_class=base, popen_kwargs={"stdin": stdin})
    try:
        engine.submit(*jobs, piped)
        engine.wait(timeout=30)  # cat would wait forever on a terminal or an open pipe
    finally:
        if not isinstance(stdin, int):
            stdin.close()
    assert [job.status for job in [*jobs, piped]] == ["done"] * 4
    assert [(tmp_path / f"out{i}.txt").read_text() for i in range(3)] == [""] * 3
    assert (tmp_path / "piped.txt").read_text() == ("" if base is ProcessJob else "from a file\n")


def test_killed_command_names_the_signal(engine: Engine) -> None:
    job = SubprocessJob("kill -9 $$")
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert "killed by signal SIGKILL" in str(job.exception())


@pytest.mark.parametrize("base", BASES)
def test_record_cmd_writes_command_file_and_nothing_is_created_without_it(engine: Engine, base: type) -> None:
    recorded = SubprocessJob("echo recorded >&2", base_class=base)  # record_cmd=True by default, as upstream
    silent = SubprocessJob("true", base_class=base, record_cmd=False)
    engine.submit(recorded, silent)
    engine.wait(timeout=30)
    assert recorded.status == "done" and silent.status == "done"
    assert (recorded.cache_dir / "command.sh").read_text() == "echo recorded >&2\n"
    assert not silent.cache_dir.exists()


@pytest.mark.parametrize("base", BASES)
def test_target_dir_placeholders(engine: Engine, base: type, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    here = SubprocessJob("pwd > where.txt", base_class=base, record_cmd=False)
    cached = SubprocessJob("pwd > where.txt", base_class=base, target_dir="$cache_dir", record_cmd=False)
    engine.submit(here, cached)
    engine.wait(timeout=30)
    assert (work / "where.txt").read_text().strip() == str(work.resolve())
    assert (cached.cache_dir / "where.txt").read_text().strip() == str(cached.cache_dir.resolve())


def test_missing_target_dir_fails_clearly(engine: Engine, tmp_path: Path) -> None:
    job = SubprocessJob("true", target_dir=str(tmp_path / "nope"))
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert isinstance(job.exception(), FileNotFoundError) and "nope" in str(job.exception())


@pytest.mark.parametrize("base", BASES)
def test_redirect_out_err_to_cache_files_and_to_one_file(engine: Engine, base: type, tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    split = SubprocessJob("echo out; echo err >&2", base_class=base, redirect_out_err=True)
    merged_path = tmp_path / "logs" / "both.txt"
    merged = SubprocessJob("echo out; echo err >&2; exit 4", base_class=base, redirect_out_err=str(merged_path))
    engine.submit(split, merged)
    engine.wait(timeout=30)
    assert (split.cache_dir / "stdout.txt").read_text() == "out\n"
    assert (split.cache_dir / "stderr.txt").read_text() == "err\n"
    assert merged_path.read_text().splitlines() == ["out", "err"]
    error = merged.exception()
    assert isinstance(error, CommandFailed) and error.stderr_tail == "out\nerr"
    captured = capfd.readouterr()
    assert "out" not in captured.out and "err" not in captured.err


@pytest.mark.parametrize("as_path", [str, Path])
def test_redirect_out_err_naming_a_directory_is_refused_at_construction(tmp_path: Path, as_path: type) -> None:
    with pytest.raises(ValueError, match="redirect_out_err .* is a directory: give a file path"):
        SubprocessJob("echo out", redirect_out_err=as_path(tmp_path))
    from executor.engine.job.extend import WebappJob

    with pytest.raises(ValueError, match="redirect_out_err .* is a directory"):
        WebappJob(f"{PY} -m http.server -b {{ip}} {{port}}", redirect_out_err=as_path(tmp_path))


def test_popen_kwargs_are_passed_and_reserved_ones_refused(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    job = SubprocessJob(f"echo $GREETING > {out}", popen_kwargs={"env": {**os.environ, "GREETING": "hi"}})
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert out.read_text() == "hi\n"
    with pytest.raises(ValueError, match="popen_kwargs may not set cwd, shell"):
        SubprocessJob("true", popen_kwargs={"shell": False, "cwd": "/"})
    with pytest.raises(TypeError, match="popen_kwargs must be a dict"):
        SubprocessJob("true", popen_kwargs=["env"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cmd": ""}, TypeError, "non-empty shell command"),
        ({"cmd": ["ls"]}, TypeError, "non-empty shell command"),
        ({"cmd": "true", "base_class": int}, TypeError, "base_class must be"),
        ({"cmd": "true", "record_cmd": "yes"}, TypeError, "record_cmd"),
        ({"cmd": "true", "change_dir": True}, TypeError, "use target_dir"),
        ({"cmd": "true", "args": (1,)}, TypeError, "put them in cmd"),
        ({"cmd": "true", "popen_kwargs": {"stdout": subprocess.PIPE}}, ValueError,
         r"popen_kwargs\['stdout'\] may not be subprocess.PIPE: nothing would read"),
        ({"cmd": "cat", "popen_kwargs": {"stdin": subprocess.PIPE}}, ValueError,
         r"popen_kwargs\['stdin'\] may not be subprocess.PIPE: nothing would write"),
        ({"cmd": "cat", "base_class": ProcessJob, "popen_kwargs": {"stdin": sys.stdin}}, ValueError,
         r"popen_kwargs\['stdin'\] is an open file or descriptor of this process.*base_class=ProcessJob"),
        ({"cmd": "true", "base_class": ProcessJob, "popen_kwargs": {"stdout": 1}}, ValueError,
         r"popen_kwargs\['stdout'\] is an open file or descriptor"),
        ({"cmd": "true", "popen_kwargs": {"bogus": 1}}, TypeError,
         r"popen_kwargs has unknown subprocess.Popen argument\(s\) \['bogus'\]; valid ones: .*env"),
        ({"cmd": "true", "popen_kwargs": {"env": {"A": 1}}}, TypeError,
         r"popen_kwargs\['env'\]\['A'\] must be a string"),
        ({"cmd": "true", "popen_kwargs": {"env": "A=1"}}, TypeError, r"popen_kwargs\['env'\] must be a dict"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SubprocessJob(**kwargs)


@pytest.mark.parametrize("base", BASES)
def test_cancel_kills_the_whole_process_group(engine: Engine, base: type, tmp_path: Path) -> None:
    marker = unique_sleep()
    started = tmp_path / "started"
    # a grandchild in the background and one in the foreground: both must die
    job = SubprocessJob(f"sleep {marker} & touch {started}; sleep {marker}", base_class=base)
    engine.submit(job)
    assert wait_until(started.exists, timeout=30)
    assert len(processes_with(marker)) >= 2  # the shell and its sleepers
    engine.cancel(job)
    assert job.status == "cancelled"
    assert wait_until(lambda: not processes_with(marker), timeout=10), processes_with(marker)


@pytest.mark.parametrize("base", BASES)
def test_engine_stop_kills_running_commands(base: type, tmp_path: Path) -> None:
    marker = unique_sleep()
    started = tmp_path / "started"
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        job = SubprocessJob(f"touch {started}; sleep {marker}", base_class=base)
        engine.submit(job)
        assert wait_until(started.exists, timeout=30)
    assert job.status == "cancelled"
    assert wait_until(lambda: not processes_with(marker), timeout=10)


@pytest.mark.timeout(60)
def test_a_worker_killed_as_its_first_command_starts_leaves_no_command_behind(tmp_path: Path) -> None:
    # the first command of a fresh worker process: its group must be guarded before the command runs
    marker = unique_sleep()
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"), print_traceback=False)) as engine:
        job = SubprocessJob(f"kill -9 $PPID; sleep {marker}", base_class=ProcessJob)
        engine.submit(job)
        engine.wait_job(job, timeout=30)
        assert job.status == "failed"
        assert wait_until(lambda: not processes_with(marker), timeout=10), processes_with(marker)


def test_a_pool_worker_leaves_no_scratch_folder_of_its_commands(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the worker adopts its command watchdog (it is a subreaper) and kills it on its way out: the
    # watchdog's scratch folder must go with it, not stay in the temp dir for good
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again, here and in the workers
    with Engine(EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        job = SubprocessJob("true", base_class=ProcessJob)
        engine.submit(job)
        engine.wait_job(job, timeout=30)
        assert job.result() == 0
        assert list(scratch.glob("executor-cmd-*"))  # the engine's and the worker's, while they run
    # the engine's own goes when its watchdog sees it stop, a moment later
    assert wait_until(lambda: not list(scratch.glob("executor-cmd-*")), timeout=10), list(scratch.iterdir())


def test_processes_left_behind_by_a_finished_command_are_stopped(engine: Engine) -> None:
    marker = unique_sleep()
    job = SubprocessJob(f"sleep {marker} & echo bye")
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.result() == 0
    assert wait_until(lambda: not processes_with(marker), timeout=10)


def test_retries_rerun_a_failing_command(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    # fails the first time, succeeds the second
    job = SubprocessJob(f"if [ -e {counter} ]; then exit 0; else touch {counter}; exit 1; fi", retries=1)
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.status == "done" and job.attempts == 2


def test_job_pickles_by_reference_and_runs_again(engine: Engine) -> None:
    job = SubprocessJob("true", base_class=ThreadJob, name="noop")
    clone = SubprocessJob.deserialization(job.serialization())
    assert type(clone) is type(job) and clone.cmd == "true" and clone.name == "noop"
    engine.submit(clone)
    engine.wait_job(clone, timeout=30)
    assert clone.result() == 0


@cmd2func
def cmd_add(a: int, b: int) -> str:
    return f"{PY} -c 'print({a} + {b})'"


@pytest.mark.parametrize("job_type", ["process", "thread", "local"])
def test_launcher_runs_cmd2func_as_subprocess_job(engine: Engine, job_type: str,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    add = launcher(cmd_add, job_type=job_type)
    job = add.submit(1, 2)
    engine.wait_job(job, timeout=30)
    assert isinstance(job, SubprocessJob) and job.result() == 0
    assert capfd.readouterr().out.splitlines() == ["3"]  # cmd2func's own "Run command:" line is not printed


def test_launcher_subprocess_job_type_takes_a_function_returning_a_command(engine: Engine) -> None:
    @launcher(job_type="subprocess")
    def exit_with(code: int) -> str:
        return f"exit {code}"

    ok, bad = exit_with.submit(0), exit_with.submit(5)
    engine.wait(timeout=30)
    assert ok.result() == 0
    assert isinstance(bad.exception(), CommandFailed) and bad.exception().returncode == 5  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_thread_variant_runs_without_a_task_and_cancel_still_stops_its_group(engine: Engine, tmp_path: Path) -> None:
    marker = unique_sleep()
    started = tmp_path / "started"
    cmd = f"touch {started}; sleep {marker}"
    job = SubprocessJob(cmd, target_dir="$cache_dir", redirect_out_err=True, record_cmd=True)
    engine.submit(job)
    assert wait_until(started.exists, timeout=30)
    # the engine's fast path: the thread backend runs the command, no asyncio Task watches it
    assert job._task is None and job._thread_call is not None
    record = job.cache_dir / "command.sh"
    assert wait_until(record.exists, timeout=10) and record.read_text() == cmd + "\n"
    engine.cancel(job)
    assert job.status == "cancelled"
    assert wait_until(lambda: not processes_with(marker), timeout=10), processes_with(marker)


def test_a_subclass_overriding_run_function_gets_its_run_function_called(engine: Engine) -> None:
    class Counted(job_class_on(ThreadJob)):  # type: ignore[misc]
        calls = 0

        async def run_function(self, func: object, args: tuple, kwargs: dict) -> object:
            type(self).calls += 1
            return await super().run_function(func, args, kwargs)  # type: ignore[arg-type]

    job = Counted("exit 0")
    engine.submit(job)
    engine.wait_job(job, timeout=30)
    assert job.result() == 0 and Counted.calls == 1
