"""The process pool's zygote: workers are forked by it, replaced after a cancel, and nothing
outlives the engine — after stop(), after the zygote is killed, after the parent is SIGKILLed.

Both kinds of zygote are covered: forked from the engine process by ``start()``
(when it is single-threaded then; checked in fresh interpreters, since this
test process may hold other threads) and started with ``python -c``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from executor.engine import Engine, EngineSetting, ProcessJob
from executor.engine.job.utils import WorkerCrashedError

from _engine_helpers import pid, pid_alive, touch_then_wait, wait_for_file, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def parent_pid(p: int) -> int:
    """The parent pid of process ``p`` (from /proc)."""
    with open(f"/proc/{p}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[-1].split()[1])


def session_of(p: int) -> int:
    """The session id of process ``p`` (-1 if it is gone)."""
    try:
        with open(f"/proc/{p}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[-1].split()[3])
    except OSError:
        return -1


def in_sessions(sessions: set[int]) -> list[int]:
    """Live processes in the given sessions (a zygote leads its own session, its workers are in it)."""
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and session_of(int(e)) in sessions and pid_alive(int(e))]


def is_python_c_zygote(p: int) -> bool:
    """True for a zygote started with ``python -c`` (False: forked from the engine process)."""
    with open(f"/proc/{p}/cmdline", "rb") as f:
        return b"zygote_main" in f.read()


def pool_processes() -> list[int]:
    """Pids of the zygotes and workers started by this process's engines (workers keep the zygote's argv)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"zygote_main" in a for a in argv) and len(argv) > 3 and argv[3] == str(os.getpid()).encode():
            if pid_alive(int(entry)):
                found.append(int(entry))
    return found


def register_atexit_marker(path: str) -> int:
    """Inside a worker: write ``path`` when the worker process exits normally."""
    import atexit

    atexit.register(Path(path).write_text, "bye")
    return os.getpid()


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Engine(EngineSetting(max_process_jobs=2, cache_path=str(tmp_path / "cache"))) as eng:
        yield eng


@pytest.mark.timeout(60)
def test_workers_are_forked_by_one_zygote_not_by_the_engine(engine: Engine, tmp_path: Path) -> None:
    held = [ProcessJob(touch_then_wait, args=(str(tmp_path / f"s{i}"), str(tmp_path / "go"))) for i in range(2)]
    engine.submit(*held)
    pids = {int(wait_for_file(str(tmp_path / f"s{i}"))) for i in range(2)}
    zygote = engine.process_pool.zygote_pid
    assert zygote is not None and zygote != os.getpid()
    assert len(pids) == 2 and set(engine.process_pool.pids) == pids
    assert {parent_pid(p) for p in pids} == {zygote}
    assert parent_pid(zygote) == os.getpid()
    (tmp_path / "go").write_text("")
    assert engine.wait(timeout=30)
    assert {j.result() for j in held} == pids


@pytest.mark.timeout(60)
def test_cancel_kills_the_worker_and_the_zygote_forks_its_replacement(engine: Engine, tmp_path: Path) -> None:
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    job = ProcessJob(touch_then_wait, args=(started, release))
    engine.submit(job)
    victim = int(wait_for_file(started))
    zygote = engine.process_pool.zygote_pid
    engine.cancel(job)
    assert job.status == "cancelled" and not pid_alive(victim)
    followers = [ProcessJob(pid) for _ in range(4)]
    engine.submit(*followers)
    assert engine.wait(timeout=30)
    used = {j.result() for j in followers}
    assert victim not in used and 1 <= len(used) <= 2
    assert engine.process_pool.zygote_pid == zygote  # the same zygote, not a new interpreter
    assert {parent_pid(p) for p in used} == {zygote}


@pytest.mark.timeout(60)
def test_stop_leaves_neither_workers_nor_zygote_and_idle_workers_exit_cleanly(tmp_path: Path) -> None:
    engine = Engine(EngineSetting(max_process_jobs=2))
    engine.start()
    busy = ProcessJob(touch_then_wait, args=(str(tmp_path / "busy"), str(tmp_path / "never")))
    idle = ProcessJob(register_atexit_marker, args=(str(tmp_path / "atexit"),))
    engine.submit(busy, idle)
    engine.wait_job(idle, timeout=30)
    wait_for_file(str(tmp_path / "busy"))
    pids = engine.process_pool.pids
    zygote = engine.process_pool.zygote_pid
    assert zygote is not None and len(pids) == 2
    engine.stop()
    assert busy.status == "cancelled"
    assert not any(pid_alive(p) for p in [*pids, zygote])
    assert pool_processes() == []
    assert (tmp_path / "atexit").read_text() == "bye"  # the idle worker ran its exit handlers


@pytest.mark.timeout(60)
def test_a_killed_zygote_takes_its_workers_and_the_pool_starts_a_new_one(engine: Engine, tmp_path: Path) -> None:
    job = ProcessJob(touch_then_wait, args=(str(tmp_path / "s"), str(tmp_path / "never")))
    engine.submit(job)
    worker = int(wait_for_file(str(tmp_path / "s")))
    zygote = engine.process_pool.zygote_pid
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    engine.wait_job(job, timeout=30)
    assert job.status == "failed" and isinstance(job.exception(), WorkerCrashedError)
    assert wait_until(lambda: not pid_alive(worker), timeout=10)
    again = ProcessJob(pid)
    engine.submit(again)
    engine.wait_job(again, timeout=30)
    assert again.status == "done"
    assert engine.process_pool.zygote_pid not in (None, zygote)


@pytest.mark.timeout(60)
def test_stop_while_workers_are_still_being_forked_leaves_nothing(tmp_path: Path) -> None:
    for _ in range(3):
        engine = Engine(EngineSetting(max_process_jobs=2))
        engine.start()
        jobs = [ProcessJob(touch_then_wait, args=(str(tmp_path / "s"), str(tmp_path / "never"))) for _ in range(4)]
        engine.submit(*jobs)  # stop at once: the zygote is booting or forking the workers
        engine.stop()
        assert {j.status for j in jobs} == {"cancelled"}
        assert pool_processes() == []


@pytest.mark.timeout(60)
def test_a_thread_alive_at_start_means_a_python_c_zygote(tmp_path: Path) -> None:
    release = threading.Event()
    other = threading.Thread(target=release.wait, args=(30,))
    other.start()
    try:
        engine = Engine(EngineSetting(max_process_jobs=1, fork_zygote=True))
        engine.start()
    finally:
        release.set()
        other.join()
    try:
        assert engine._spare_zygote is None  # forking a multi-threaded process is unsafe: not done
        job = ProcessJob(pid)
        engine.submit(job)
        engine.wait_job(job, timeout=30)
        zygote = engine.process_pool.zygote_pid
        assert zygote is not None and is_python_c_zygote(zygote)
        assert parent_pid(job.result()) == zygote
    finally:
        engine.stop()
    assert in_sessions({zygote}) == []


def test_fork_zygote_setting_is_checked() -> None:
    with pytest.raises(TypeError, match="fork_zygote"):
        EngineSetting(fork_zygote="yes")  # type: ignore[arg-type]


FORKED_SCRIPT = textwrap.dedent("""
    import json, os, select, sys, time
    from pathlib import Path
    from executor.engine import Engine, EngineSetting, ProcessJob

    out = Path(sys.argv[1])

    def hold(path):
        Path(path + ".tmp").write_text(str(os.getpid()))
        os.rename(path + ".tmp", path)
        time.sleep(600)

    def wait_pid(path, timeout=30):
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, path
            time.sleep(0.005)
        return int(path.read_text())

    def ppid(p):
        with open(f"/proc/{p}/stat") as f:
            return int(f.read().rsplit(")", 1)[-1].split()[1])

    def gone(p, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                        return True
            except OSError:
                return True
            time.sleep(0.005)
        return False

    report = {}
    idle = Engine(EngineSetting(fork_zygote=True))
    idle.start()
    report["idle_zygote"] = idle._spare_zygote.proc.pid
    idle.stop()  # never used: it must be gone after stop
    report["idle_gone"] = not os.path.exists(f"/proc/{report['idle_zygote']}")  # dead and reaped

    read_end, write_end = os.pipe()
    engine = Engine(EngineSetting(max_process_jobs=2))  # a pool size: start() forks the zygote
    engine.start()
    os.close(write_end)  # the zygote must not hold a copy: the reader sees EOF at once
    report["pipe_eof"] = bool(select.select([read_end], [], [], 10)[0]) and os.read(read_end, 1) == b""
    jobs = [ProcessJob(hold, args=(str(out / f"w{i}"),)) for i in range(2)]
    engine.submit(*jobs)
    workers = [wait_pid(out / f"w{i}") for i in range(2)]
    zygote = engine.process_pool.zygote_pid
    with open(f"/proc/{zygote}/cmdline", "rb") as f:
        report["zygote_cmdline_is_ours"] = f.read() == open("/proc/self/cmdline", "rb").read()
    report["zygote_parent_is_engine"] = ppid(zygote) == os.getpid()
    report["workers_children_of_zygote"] = all(ppid(w) == zygote for w in workers)
    engine.cancel(jobs[0])
    report["cancelled_worker_gone"] = gone(workers[0])
    after = ProcessJob(os.getpid)
    engine.submit(after)
    engine.wait_job(after, timeout=30)
    report["replacement_from_same_zygote"] = (engine.process_pool.zygote_pid == zygote
                                              and ppid(after.result()) == zygote)
    report.update(zygote=zygote, workers=workers, replacement=after.result())
    engine.stop()
    report["stopped_gone"] = all(gone(p) for p in [zygote, *workers, after.result()])
    report["zygote_reaped"] = not os.path.exists(f"/proc/{zygote}")
    (out / "report.json").write_text(json.dumps(report))
""")


@pytest.mark.timeout(90)
def test_forked_zygote_holds_no_inherited_fd_and_leaves_nothing_after_cancel_and_stop(tmp_path: Path) -> None:
    script = tmp_path / "forked.py"
    script.write_text(FORKED_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, timeout=80,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""  # neither the engine nor its forked zygote prints anything
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["idle_gone"] and report["pipe_eof"]
    assert report["zygote_cmdline_is_ours"] and report["zygote_parent_is_engine"]
    assert report["workers_children_of_zygote"] and report["cancelled_worker_gone"]
    assert report["replacement_from_same_zygote"] and report["stopped_gone"] and report["zygote_reaped"]
    assert in_sessions({report["zygote"], report["idle_zygote"]}) == []


PARENT_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from executor.engine import Engine, EngineSetting, ProcessJob

    out = Path(sys.argv[1])
    fork_zygote = sys.argv[2] == "forked"

    def hold(path):
        # written then renamed: the test reads the file as soon as it exists
        Path(path + ".tmp").write_text(str(os.getpid()))
        os.rename(path + ".tmp", path)
        time.sleep(600)

    with Engine(EngineSetting(max_process_jobs=2, fork_zygote=fork_zygote)) as engine:
        engine.submit(ProcessJob(hold, args=(str(out / "w1"),)), ProcessJob(hold, args=(str(out / "w2"),)))
        while not ((out / "w1").exists() and (out / "w2").exists()):
            time.sleep(0.01)
        (out / "zygote.tmp").write_text(str(engine.process_pool.zygote_pid))
        (out / "zygote.tmp").rename(out / "zygote")
        time.sleep(600)
""")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["forked", "python-c"])
def test_no_process_survives_a_sigkilled_parent(tmp_path: Path, kind: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), kind], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    children: list[int] = []
    try:
        zygote = int(wait_for_file(str(tmp_path / "zygote"), timeout=60))
        children = [zygote, *(int((tmp_path / name).read_text()) for name in ("w1", "w2"))]
        assert all(pid_alive(p) for p in children)
        assert is_python_c_zygote(zygote) == (kind == "python-c")
        parent.kill()
        parent.wait(timeout=30)
        assert wait_until(lambda: not any(pid_alive(p) for p in children), timeout=20)
        assert wait_until(lambda: in_sessions({zygote}) == [], timeout=20)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for p in children:  # only if the test failed: leave nothing behind
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)


def _stdout_buffering() -> tuple[bool, bool]:
    import sys

    return sys.stdout.line_buffering, sys.stdout.write_through


def test_workers_write_whole_lines_even_when_python_is_unbuffered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Unbuffered, print() writes text and newline separately and two workers
    # sharing a pipe splice their lines; line buffering keeps each line whole.
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    with Engine(setting=EngineSetting(fork_zygote=False)) as engine:
        job = ProcessJob(_stdout_buffering)
        engine.submit(job)
        engine.wait_job(job, timeout=30)
    assert job.result() == (True, False)
