"""Tables fit the terminal: 80 columns included; ``-v`` shows every cell whole."""

from __future__ import annotations

import pytest

from pytest_executor.views._fit import abbreviate_names, fit_columns, shorten_left

pytestmark = pytest.mark.timeout(120)


def test_after_lists_fold_parametrised_instances() -> None:
    names = [f"test_factorial_grows[{n}]" for n in (0, 1, 5, 10, 20)] + ["test_base"]
    assert abbreviate_names(names) == "test_factorial_grows[…] ×5, test_base"
    assert abbreviate_names(["test_x[1]"]) == "test_x[1]"


def test_node_ids_are_shortened_from_the_left() -> None:
    assert shorten_left("tests/test_a.py::test_x", 10) == "…::test_x"[:1] + "py::test_x"[1:]
    assert len(shorten_left("tests/test_a.py::test_x", 10)) == 10
    rows = fit_columns(["test", "after"], [["tests/test_a.py::test_long_name", "x" * 40]], 40,
                       shrink=[(1, "right", 16), (0, "left", 24)])
    assert rows == [["…st_a.py::test_long_name", "x" * 15 + "…"]]


LONG = """
import pytest

@pytest.mark.parametrize("n", range(5))
def test_factorial_grows_with_a_rather_long_descriptive_name(n):
    pass

@pytest.mark.job(after="test_factorial_grows_with_a_rather_long_descriptive_name")
def test_after_every_instance_of_the_long_parametrised_test():
    pass
"""


def test_tables_fit_80_columns_and_verbose_shows_everything(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_quite_a_long_module_name_for_the_table=LONG)
    args = ("-p", "no:cacheprovider", "--executor-backend=process", "--executor-workers=2", "--executor-table=all")
    monkeypatch.setenv("COLUMNS", "80")
    result = pytester.runpytest_subprocess(*args)
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith("test "))
    assert lines[start].split() == ["test", "worker", "status", "tries", "time", "wait", "after"]
    ours = lines[start:]  # the table, the critical path and the summary line
    assert all(len(line) <= 80 for line in ours), "\n".join(line for line in ours if len(line) > 80)
    result.stdout.fnmatch_lines(["…e_long_parametrised_test  w?      passed  1      *s  *s  test_factorial_…"])
    verbose = pytester.runpytest_subprocess(*args, "-v")
    verbose.stdout.fnmatch_lines(
        ["test_quite_a_long_module_name_for_the_table.py::test_after_every_instance_of_the_long_parametrised_test"
         " * process * w? * passed * 1 * *s * *s * test_factorial_grows_with_a_rather_long_descriptive_name[[]0[]],*"]
    )


def test_benchmark_table_keeps_the_columns_that_fit_and_names_the_others() -> None:
    from pytest_executor.benchmark._table import render_benchmarks

    stats = {"min": 1e-6, "max": 3e-6, "mean": 2e-6, "stddev": 5e-7, "median": 2e-6, "iqr": 1e-7,
             "ops": 5e5, "rounds": 100, "iterations": 1000, "iqr_outliers": 1, "stddev_outliers": 2,
             "q1": 1.9e-6, "q3": 2e-6, "total": 2e-4}
    records = [{"name": "tests/test_sorting.py::test_sorting_a_reasonably_long_benchmark_name[1000]", "stats": stats}]
    wide = render_benchmarks(records, None)
    assert wide.splitlines()[0].split() == [
        "benchmark", "min", "max", "mean", "stddev", "median", "IQR", "outliers", "ops/s", "rounds", "iterations"]
    narrow = render_benchmarks(records, None, width=80).splitlines()
    assert all(len(line) <= 80 for line in narrow)
    assert narrow[0].split() == ["benchmark", "min", "mean", "stddev", "median", "ops/s", "rounds"]
    assert narrow[2].startswith("…")
    assert narrow[-1] == "(left out to fit the terminal, -v shows them: max, IQR, outliers, iterations)"
