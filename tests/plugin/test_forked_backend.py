"""Acceptance: ``--executor-backend=forked`` runs each test in a child forked from a warm worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.plugin._processes import alive

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked backend needs os.fork"),
]

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:cacheprovider
"""

ISOLATION = """
import os
from pathlib import Path

import pytest

SEEN = []  # module state: it would leak from one test to the next in one process


@pytest.fixture(scope="session")
def session_resource():
    Path(__file__).with_name(f"session-{os.getpid()}").write_text("set up")
    yield os.getpid()
    Path(__file__).with_name(f"session-{os.getpid()}").write_text("torn down")


@pytest.mark.parametrize("n", range(4))
def test_module_state_is_fresh(n, session_resource):
    SEEN.append(n)
    os.environ["LEAKED"] = str(n)  # the environment too
    Path(__file__).with_name(f"pid-{n}").write_text(str(os.getpid()))
    assert SEEN == [n]
    assert session_resource == os.getpid()


def test_environment_is_fresh():
    assert "LEAKED" not in os.environ


def test_failure_looks_like_pytest():
    print("captured in a forked child")
    assert 1 + 1 == 3


@pytest.mark.job(after="test_module_state_is_fresh")
def test_runs_after_all_instances():
    assert all(Path(__file__).with_name(f"pid-{n}").exists() for n in range(4))
"""


def test_each_test_runs_in_a_fresh_child_and_reports_like_pytest(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_isolation=ISOLATION)
    result = pytester.runpytest_subprocess(
        "--executor-backend=forked", "--executor-workers=2", "-rA", "--executor-report=report.json"
    )
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*def test_failure_looks_like_pytest():*",
            "E       assert (1 + 1) == 3",
            "*captured in a forked child*",
            "PASSED test_isolation.py::test_runs_after_all_instances",
        ]
    )
    pids = {(pytester.path / f"pid-{n}").read_text() for n in range(4)}
    assert len(pids) == 4, "each test must run in a process of its own"
    # Session fixtures belong to the child: set up and torn down around each test.
    for pid in pids:
        assert (pytester.path / f"session-{pid}").read_text() == "torn down"
    workers = {job["worker"] for job in json.loads((pytester.path / "report.json").read_text())["jobs"]}
    assert workers <= {"f0", "f1"}, workers


CRASHES = """
import ctypes
import os
import signal
import sys
import time

import pytest


def test_segfault():
    print("out before the crash")
    sys.stderr.write("err before the crash\\n")
    ctypes.string_at(0)


def test_os_exit():
    os._exit(3)


def test_sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.job(timeout=1)
def test_hangs():
    print("hanging now")
    time.sleep(60)


def test_after_them_all():
    pass
"""


def test_a_crash_or_timeout_fails_the_test_and_the_worker_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_crashes=CRASHES)
    result = pytester.runpytest_subprocess(
        "--executor-backend=forked", "--executor-workers=1", "--executor-report=report.json"
    )
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines_random(
        [
            "*the forked child running test_crashes.py::test_segfault died in its call "
            "(killed by signal SIGSEGV); worker f0 goes on.*",
            "*Fatal Python error: Segmentation fault*",
            "*out before the crash*",
            "*err before the crash*",
            "*test_crashes.py::test_os_exit died in its call (exit code 3)*",
            "*test_crashes.py::test_sigkill died in its call (killed by signal SIGKILL)*",
            "*Timeout: test_crashes.py::test_hangs did not finish within 1 s; its forked child was stopped*",
            "*in test_hangs*",
            "*hanging now*",
        ]
    )
    assert "worker f0 lost" not in result.stdout.str()
    jobs = json.loads((pytester.path / "report.json").read_text())["jobs"]
    assert {job["worker"] for job in jobs} == {"f0"}, "one worker ran everything: none was replaced"
    hang = next(job for job in jobs if job["test"].endswith("test_hangs"))
    assert 1 <= hang["duration"] < 30, hang  # timed from the fork to the child's end


CHILDREN = """
import subprocess
import sys
from pathlib import Path


def test_leaves_a_child_behind():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(__file__).with_name("child.pid").write_text(str(proc.pid))


def test_leaves_a_detached_child_behind():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    Path(__file__).with_name("detached.pid").write_text(str(proc.pid))


def test_next():
    pass
"""


def test_what_a_test_leaves_running_is_killed_with_its_child(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_children=CHILDREN)
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1")
    result.assert_outcomes(passed=3)
    for name in ("child.pid", "detached.pid"):
        pid = int((pytester.path / name).read_text())
        assert not alive(pid), f"{name}: process {pid} outlived its test"


HAS_CHILDREN = """
import subprocess
import sys

from executor._kill import has_children

assert not has_children(), "a fresh interpreter has no child"
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
assert has_children(), "a running child"
child.stdin.close()  # it ends
child.wait()
assert not has_children(), "the child was reaped"
print("ok")
"""


def test_has_children_sees_a_running_child_and_not_a_reaped_one() -> None:
    """The worker's check after each forked test (one waitid) against a real child, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", HAS_CHILDREN], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


DETACHED_THEN_NEXT = """
import os
import select
import subprocess
import sys
from pathlib import Path


def test_leaves_a_detached_child_behind():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    Path(__file__).with_name("detached.pid").write_text(str(proc.pid))


def test_next_starts_after_it_was_killed():
    pid = int(Path(__file__).with_name("detached.pid").read_text())
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone (and reaped) already
    # Readable once the process exited: at once if the worker killed it before forking this test.
    ready, _, _ = select.select([pidfd], [], [], 20)
    assert ready, f"process {pid}, detached by the previous test, still runs in the next one"
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the check waits on a pidfd (Linux >= 5.3)")
def test_a_detached_process_is_killed_before_the_workers_next_test(pytester: pytest.Pytester) -> None:
    """The worker adopts (subreaper) and kills what a test detached as soon as its child is gone."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_detached=DETACHED_THEN_NEXT)
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


THREADED_CONFTEST = """
import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="conftest-thread", daemon=True).start()
"""


def test_threads_in_the_worker_fall_back_to_subprocess_with_a_notice(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makeconftest(THREADED_CONFTEST)
    pytester.makepyfile(test_isolation=ISOLATION)
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=2")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        ["executor: forked backend falls back to subprocess: 1 thread(s) running after collection (conftest-thread)"]
    )
    pids = {(pytester.path / f"pid-{n}").read_text() for n in range(4)}
    assert len(pids) == 4


def test_job_marker_selects_the_forked_backend(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_marked="""
        import os
        import pytest

        PARENT = os.getppid()

        @pytest.mark.job(backend="forked")
        def test_forked():
            os.environ["MARK"] = "1"
            assert os.getppid() != PARENT  # a worker's child, not the pytest process

        def test_local():
            assert "MARK" not in os.environ
        """
    )
    result = pytester.runpytest_subprocess("--executor-workers=1")
    result.assert_outcomes(passed=2)


def test_stop_at_first_failure_and_retries(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_flow="""
        import os
        from pathlib import Path
        import pytest

        @pytest.mark.job(retries=2)
        def test_flaky():
            marker = Path(__file__).with_name("attempts")
            marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
            if len(marker.read_text()) < 3:
                os._exit(9)  # a crash is retried like a failure

        @pytest.mark.job(after="test_flaky", exclusive=True)
        def test_fails():
            assert False

        @pytest.mark.job(after="test_fails")
        def test_never_runs():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=2", "-x")
    result.assert_outcomes(passed=1, failed=1)
    assert (pytester.path / "attempts").read_text() == "xxx"


COVERED = """
def used(n):
    if n > 0:
        return "positive"
    return "other"


def unused():
    return "never"
"""


def test_coverage_measures_the_forked_children(pytester: pytest.Pytester) -> None:
    pytest.importorskip("coverage")
    pytester.makeini(INNER_INI)
    (pytester.path / ".coveragerc").write_text("[run]\nparallel = true\nsource = .\n")
    pytester.makepyfile(covered=COVERED)
    pytester.makepyfile(
        test_cov="""
        import covered

        def test_positive():
            assert covered.used(1) == "positive"

        def test_other():
            assert covered.used(0) == "other"
        """
    )
    run = pytester.run(
        sys.executable, "-m", "coverage", "run", "-m", "pytest", "--executor-backend=forked", "--executor-workers=1"
    )
    assert run.ret == 0, run.stdout.str()
    assert pytester.run(sys.executable, "-m", "coverage", "combine").ret == 0
    report = pytester.run(sys.executable, "-m", "coverage", "report", "-m", "--include=covered.py")
    # Only unused()'s body is missed: both branches of used() ran, each in a child of its own.
    report.stdout.fnmatch_lines(["covered.py * 6 * 1 * 83% * 8"])


def test_the_worker_survives_pytest_exit_in_a_child_and_the_run_ends(pytester: pytest.Pytester) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_exit="""
        import pytest

        def test_first():
            pytest.exit("enough", returncode=3)

        @pytest.mark.job(after="test_first")
        def test_second():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1")
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*enough*"])


def test_the_option_help_names_the_forked_backend(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*forked (each test in a*"])


def test_fork_stats_count_every_child_for_the_benchmark(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_some="import pytest\n\n@pytest.mark.parametrize('n', range(5))\ndef test_n(n): pass\n")
    counts = pytester.path / "counts"
    counts.mkdir()
    monkeypatch.setenv("PYTEST_EXECUTOR_FORK_STATS", str(counts))
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1")
    result.assert_outcomes(passed=5)
    (stats,) = [json.loads(path.read_text()) for path in counts.iterdir()]
    assert stats["children"] == 5
    assert stats["child"]["faults"] > 0 and stats["worker"]["user"] + stats["worker"]["sys"] > 0


def test_a_child_walking_the_engine_package_imports_nothing(pytester: pytest.Pytester) -> None:
    """freezegun walks every module's names on each start: the engine's lazy exports must be in the worker already."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_walk="""
        import sys

        import executor.engine
        import executor.engine.job

        def test_walk():
            before = set(sys.modules)
            for package in (executor.engine, executor.engine.job):
                for name in dir(package):
                    getattr(package, name)
            assert sorted(set(sys.modules) - before) == []
        """
    )
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1")
    result.assert_outcomes(passed=1)


TALKATIVE = """
import os

import pytest


@pytest.fixture
def dies_in_teardown():
    yield
    os._exit(3)


def test_prints_more_than_a_pipe_holds():
    for line in range(20_000):
        print(f"line {line:05d} of a long output")
    print("the end of the output")


def test_passes_then_its_child_dies_in_teardown(dies_in_teardown):
    pass


def test_next():
    pass
"""


def test_what_a_child_sent_before_it_died_or_while_the_pipe_was_full_arrives(pytester: pytest.Pytester) -> None:
    """The reports a child sent before it died in teardown arrive; a child writing more than a pipe holds is not stalled."""
    pytester.makeini(INNER_INI)
    pytester.makepyfile(test_talk=TALKATIVE)
    result = pytester.runpytest_subprocess("--executor-backend=forked", "--executor-workers=1", "-rP")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_passes_then_its_child_dies_in_teardown*",
        "*died in its teardown (exit code 3)*",
    ])
    result.stdout.fnmatch_lines(["line 19999 of a long output", "the end of the output"])
