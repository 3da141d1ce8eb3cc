"""Suites written for pytest-dependency, pytest-order, pytest-rerunfailures, pytest-timeout and
pytest-benchmark run unchanged: serially, on the process and dask backends, and under ``-n 2``.

The dev extra installs those plugins, but every test session switches them off
(``tests/conftest.py``), so most runs here use our own honouring of their markers; the
tests at the end load the real plugins and check that we work beside them, and that
pytest-benchmark's ``compare`` command reads our JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

distributed = pytest.importorskip("distributed")

MODES = ["local", "process", "dask", "xdist"]


@pytest.fixture
def mode_args(request: pytest.FixtureRequest) -> list[str]:
    """Command-line arguments that run the suite in the parametrized mode."""
    mode = request.param
    if mode == "process":
        return ["--executor-backend=process", "--executor-workers=2"]
    if mode == "dask":
        address = request.getfixturevalue("dask_address")
        tester: pytest.Pytester = request.getfixturevalue("pytester")
        (tester.path / "count_dir.txt").write_text(str(tester.path))  # see shared_dir in the suites
        return ["--executor-backend=dask", f"--executor-dask-address={address}"]
    if mode == "xdist":
        return ["-n", "2"]
    return []


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A subprocess session without pytest-timeout, so our own honouring of it is used."""
    return pytester.runpytest_subprocess("-p", "no:timeout", "-p", "no:cacheprovider", "-rfs", *args)


DEPENDENCY_SUITE = """
import pytest

def shared_dir(request):
    # on a cluster given by address each dask worker runs a copy of its own: meet where the test says
    pointer = request.config.rootpath / "count_dir.txt"
    return type(pointer)(pointer.read_text()) if pointer.exists() else request.config.rootpath

def ran(request, name):
    (shared_dir(request) / f"ran-{name}").touch()

def has_run(request, name):
    return (shared_dir(request) / f"ran-{name}").exists()

@pytest.mark.dependency(depends=["test_a"])
def test_b(request):
    assert has_run(request, "a")           # collected first: reordered after test_a

@pytest.mark.dependency()
def test_a(request):
    ran(request, "a")

@pytest.mark.dependency()
def test_broken():
    assert False

@pytest.mark.dependency(depends=["test_broken"])
def test_needs_broken():
    pass

@pytest.mark.dependency(depends=["test_unknown"])
def test_needs_unknown():
    pass

class TestScopes:
    @pytest.mark.dependency()
    def test_login(self, request):
        ran(request, "login")

    @pytest.mark.dependency(depends=["test_login"], scope="class")
    def test_profile(self, request):
        assert has_run(request, "login")

@pytest.mark.dependency(depends=["test_dep.py::TestScopes::test_login"], scope="session")
def test_session_scope(request):
    assert has_run(request, "login")

@pytest.mark.dependency(name="custom")
def test_named(request):
    ran(request, "named")

@pytest.mark.dependency(depends=["custom"])
def test_by_name(request):
    assert has_run(request, "named")
"""


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_pytest_dependency_markers(pytester: pytest.Pytester, mode_args: list[str]) -> None:
    """Edges reorder and hold in parallel; a failed or unknown dependency skips, as in that plugin."""
    pytester.makepyfile(test_dep=DEPENDENCY_SUITE)
    result = run(pytester, *mode_args)
    result.assert_outcomes(passed=7, failed=1, skipped=2)
    result.stdout.fnmatch_lines_random([
        "SKIPPED [[]1[]] test_dep.py:*: dependency test_dep.py::test_broken failed",
        "SKIPPED [[]1[]] test_dep.py:*: test_needs_unknown depends on test_unknown",
    ])


ORDER_SUITE = """
import pytest

def shared_dir(request):
    # on a cluster given by address each dask worker runs a copy of its own: meet where the test says
    pointer = request.config.rootpath / "count_dir.txt"
    return type(pointer)(pointer.read_text()) if pointer.exists() else request.config.rootpath

def log(request, name):
    path = shared_dir(request) / "order.log"
    with open(path, "a") as stream:
        stream.write(name + "\\n")
    return path.read_text().split()

@pytest.mark.order("last")
def test_cleanup(request):
    assert set(log(request, "cleanup")) >= {"setup", "second", "middle", "broken", "cleanup"}

def test_middle(request):
    assert {"setup", "second"} <= set(log(request, "middle"))

def test_broken(request):
    log(request, "broken")
    assert False

@pytest.mark.order(after="test_broken")
def test_after_broken(request):
    assert "broken" in log(request, "after_broken")   # runs although test_broken failed

@pytest.mark.order(2)
def test_second(request):
    assert log(request, "second")[:1] == ["setup"]

@pytest.mark.order("first")
def test_setup(request):
    assert log(request, "setup")[0] == "setup"
"""


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_pytest_order_markers(pytester: pytest.Pytester, mode_args: list[str]) -> None:
    """Numbered levels run in turn, relative names wait for their target, and nothing is skipped."""
    pytester.makepyfile(test_order=ORDER_SUITE)
    result = run(pytester, *mode_args)
    result.assert_outcomes(passed=5, failed=1)


RETRY_SUITE = """
import threading
import pytest

def attempt(request, name):
    # on a cluster given by address the suite runs from a shipped copy: count where the test says
    pointer = request.config.rootpath / "count_dir.txt"
    base = type(pointer)(pointer.read_text()) if pointer.exists() else request.config.rootpath
    path = base / f"{name}.count"
    number = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(number))
    return number

@pytest.mark.flaky(reruns=2)
def test_flaky(request):
    assert attempt(request, "flaky") == 3

def test_global_reruns(request):
    assert attempt(request, "global") == 2

@pytest.mark.flaky(reruns=0)
@pytest.mark.timeout(1)
def test_hangs():
    threading.Event().wait(30)

def test_neighbour():
    pass
"""


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_rerunfailures_and_timeout_markers(pytester: pytest.Pytester, mode_args: list[str]) -> None:
    """``flaky(reruns=)``/``--reruns`` retry; ``timeout(n)`` fails only the test that hangs."""
    pytester.makepyfile(test_retry=RETRY_SUITE)
    (pytester.path / "count_dir.txt").write_text(str(pytester.path))
    result = run(pytester, "--reruns", "1", *mode_args)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_retry.py::test_hangs*"])
    assert (pytester.path / "flaky.count").read_text() == "3"


BENCHMARK_SUITE = """
import pytest

def test_sorted(benchmark):
    benchmark.extra_info["size"] = 3
    assert benchmark(sorted, [3, 1, 2]) == [1, 2, 3]

@pytest.mark.benchmark(group="parse", min_rounds=3)
def test_parse(benchmark):
    assert benchmark.pedantic(int, args=("12",), rounds=4, iterations=2) == 12

def test_plain():
    pass
"""


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_pytest_benchmark_fixture_and_marker(pytester: pytest.Pytester, mode_args: list[str]) -> None:
    """``benchmark(fn)``, ``pedantic``, ``extra_info`` and the marker's group reach the JSON file."""
    pytester.makepyfile(test_bench=BENCHMARK_SUITE)
    result = run(pytester, "--benchmark-json=out.json", "--benchmark-max-time=0.01", *mode_args)
    result.assert_outcomes(passed=3)
    benches = {b["fullname"]: b for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    assert sorted(benches) == ["test_bench.py::test_parse", "test_bench.py::test_sorted"]
    assert benches["test_bench.py::test_sorted"]["extra_info"] == {"size": 3}
    parse = benches["test_bench.py::test_parse"]
    assert (parse["group"], parse["stats"]["rounds"], parse["stats"]["iterations"]) == ("parse", 4, 2)


def test_benchmark_options_select_disable_sort_and_columns(pytester: pytest.Pytester) -> None:
    """``--benchmark-only/-skip/-disable``, ``--benchmark-sort`` and ``--benchmark-columns``."""
    pytester.makepyfile(test_bench=BENCHMARK_SUITE)
    run(pytester, "--benchmark-only", "--benchmark-max-time=0.01").assert_outcomes(passed=2, deselected=1)
    run(pytester, "--benchmark-skip").assert_outcomes(passed=1, deselected=2)
    disabled = run(pytester, "--benchmark-disable")
    disabled.assert_outcomes(passed=3)
    assert "job_benchmark: " not in disabled.stdout.str()
    table = run(pytester, "--benchmark-max-time=0.01", "--benchmark-sort=name", "--benchmark-columns=min,rounds")
    table.stdout.fnmatch_lines([
        "benchmark * min * rounds",
        "test_bench.py::test_sorted * *",
        "test_bench.py::test_parse [[]parse[]] * 4",
    ])
    bad = run(pytester, "--benchmark-columns=min,speed")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--benchmark-columns: unknown column(s) speed; valid: min, max, mean, *"])


def test_benchmark_autosave_then_compare(pytester: pytest.Pytester) -> None:
    """``--benchmark-autosave`` writes pytest-benchmark's storage layout; ``--benchmark-compare`` reads it."""
    pytester.makepyfile(test_bench=BENCHMARK_SUITE)
    run(pytester, "--benchmark-autosave", "--benchmark-max-time=0.01").assert_outcomes(passed=3)
    saved = list((pytester.path / ".benchmarks").glob("*/0001_*.json"))
    assert len(saved) == 1
    compared = run(pytester, "--benchmark-compare", "--benchmark-max-time=0.01")
    compared.assert_outcomes(passed=3)
    compared.stdout.fnmatch_lines([f"benchmark * mean vs {saved[0].stem}", f"compared with *{saved[0].name}"])
    missing = run(pytester, "--benchmark-compare=0007")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines([f"*--benchmark-compare: no saved run '0007' in * (saved: {saved[0].name})"])


# -- the real plugins, installed ---------------------------------------------------------


@pytest.fixture
def with_foreign(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions started from now on load the real plugins (the dev extra installs them)."""
    for module in ("pytest_dependency", "pytest_order", "pytest_rerunfailures", "pytest_benchmark"):
        pytest.importorskip(module, reason="installed by the dev extra")
    addopts = os.environ.get("PYTEST_ADDOPTS", "")
    for name in ("benchmark", "dependency", "pytest_order", "rerunfailures"):
        addopts = addopts.replace(f"-p no:{name}", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", addopts)


@pytest.mark.parametrize("mode_args", ["process", "xdist"], indirect=True)
def test_beside_installed_plugins(pytester: pytest.Pytester, with_foreign: None, mode_args: list[str]) -> None:
    """With the real plugins loaded: no false skip, no double rerun, order kept, in parallel."""
    pytester.makepyfile(test_dep=DEPENDENCY_SUITE, test_order=ORDER_SUITE, test_retry=RETRY_SUITE)
    (pytester.path / "count_dir.txt").write_text(str(pytester.path))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark", "-rs", "--reruns", "1", *mode_args)
    header = next(line for line in result.outlines if line.startswith("plugins: "))
    assert {"dependency", "rerunfailures", "order"} <= {entry.split("-")[0] for entry in header[9:].split(", ")}
    result.assert_outcomes(passed=15, failed=3, skipped=2)
    assert (pytester.path / "flaky.count").read_text() == "3"


def test_pytest_benchmark_compare_reads_our_json(pytester: pytest.Pytester, with_foreign: None) -> None:
    """pytest-benchmark's own ``compare`` command loads the file ``--benchmark-json`` wrote."""
    pytester.makepyfile(test_bench=BENCHMARK_SUITE)
    run(pytester, "-p", "no:benchmark", "--benchmark-json=out.json", "--benchmark-max-time=0.01").assert_outcomes(passed=3)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())",
         "compare", "--columns=min,rounds", "out.json"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("test_sorted ") for line in lines), done.stdout
    assert any(line.startswith("test_parse ") and line.split()[-1] == "4" for line in lines), done.stdout


def test_installed_pytest_benchmark_keeps_its_fixture_and_runs_exclusively(
    pytester: pytest.Pytester, with_foreign: None
) -> None:
    """The real plugin measures (its own table); its tests are exclusive jobs of the executor."""
    pytester.makepyfile(test_bench=BENCHMARK_SUITE)
    result = run(pytester, "--benchmark-max-time=0.01", "--executor-backend=local", "--executor-report=report.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*benchmark*: 1 tests*", "Name (time in *"])
    assert "job_benchmark: " not in result.stdout.str()
    jobs = {job["test"]: job for job in json.loads((pytester.path / "report.json").read_text())["jobs"]}
    assert {test: job["exclusive"] for test, job in jobs.items()} == {
        "test_bench.py::test_sorted": True, "test_bench.py::test_parse": True, "test_bench.py::test_plain": False,
    }


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("dependency(depends=['test_a'], scope='file')",
         "test_bad.py::test_bad: dependency(scope='file') is not one of session, package, module, class"),
        ("order('soon')", "test_bad.py::test_bad: order('soon') is neither an integer nor one of first, *"),
        ("flaky(reruns=-1)", "test_bad.py::test_bad: flaky(reruns=-1) must be an integer >= 0"),
        ("timeout('long')", "test_bad.py::test_bad: timeout('long') must be a number of seconds >= 0"),
    ],
)
def test_bad_foreign_marker_is_a_usage_error_naming_test_and_argument(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """A mistake in a foreign marker stops the run at collection, as one in ``job()`` does."""
    pytester.makepyfile(test_bad=f"import pytest\n\n@pytest.mark.{marker}\ndef test_bad():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"  {message}"])


def test_order_scope_module_and_dependency_options(pytester: pytest.Pytester) -> None:
    """``--order-scope=module`` orders within each file; ``automark_dependency`` and
    ``--ignore-unknown-dependency`` change which names are known, as in pytest-dependency."""
    pytester.makeini("[pytest]\nautomark_dependency = true\n")
    pytester.makepyfile(
        test_one="""
import pytest

@pytest.mark.order("last")
def test_one_last(request):
    assert (request.config.rootpath / "one-first").exists()

def test_one_first(request):
    (request.config.rootpath / "one-first").touch()
""",
        test_two="""
import pytest

def test_plain():                      # known through automark_dependency
    pass

@pytest.mark.dependency(depends=["test_plain"])
def test_needs_plain():
    pass

@pytest.mark.dependency(depends=["test_missing"])
def test_needs_missing():
    pass
""",
    )
    result = run(pytester, "--order-scope=module", "--ignore-unknown-dependency", "--executor-table=all")
    result.assert_outcomes(passed=5)
    # ids are shortened from the left to fit the table in 80 columns
    result.stdout.fnmatch_lines(["*::test_one_last * test_one_first", "*::test_needs_plain * test_plain"])
    skipping = run(pytester, "--order-scope=module", "-k", "needs_missing")
    skipping.assert_outcomes(skipped=1, deselected=4)
    skipping.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_two.py:*: test_needs_missing depends on test_missing"])
