"""Acceptance: ``after=`` under every way of choosing tests, on the local and process backends.

A dependency outside the run is skipped with the same reason whatever left it
out (a file or node-id argument, a directory, ``--lf``, ``--sw``, ``-k``,
``-m``, ``--deselect``, ``--ignore``); ``--executor-with-deps`` pulls it in,
collecting only the files it lives in.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

pytestmark = pytest.mark.timeout(300)  # up to four real runs with worker processes each, on a loaded machine

INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:xdist -p no:xdist.looponfail -p no:randomly
markers = slow: a slow test
filterwarnings = ignore::pytest.PytestAssertRewriteWarning
"""

CONFTEST = """
import pytest

@pytest.fixture
def currency():
    return "EUR"
"""

PRICES = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_price(n, currency):
    assert currency == "EUR"

def test_other():
    pass
"""

SHOP = """
import os

import pytest

def test_add_item():
    pass

class TestCart:
    @pytest.mark.slow
    @pytest.mark.job(after=["test_add_item", "test_prices.py::test_price[3]"])
    def test_checkout(self):
        assert not os.path.exists("fail-checkout")

def test_unrelated():
    pass
"""

SUB = """
import pytest

@pytest.mark.job(after="tests/test_prices.py::test_price[1]")
def test_deep():
    pass
"""

BOOM = """
open("boom-was-imported", "w").close()
"""

BACKENDS = {"local": ("--executor-backend=local",), "process": ("--executor-backend=process", "--executor-workers=2")}

CHECKOUT_LINE = "SKIPPED [[]1[]] tests/test_shop.py:10: dependency {} (use --executor-with-deps to run {})"
PRICE3 = "tests/test_prices.py::test_price[[]3[]] was not selected"
ADD_ITEM = "tests/test_shop.py::test_add_item was not selected"


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """The suite: a dependency inside a file, one across files, one across directories."""
    pytester.makeini(INI)
    tests = pytester.mkdir("tests")
    (tests / "conftest.py").write_text(CONFTEST)
    (tests / "test_prices.py").write_text(PRICES)
    (tests / "test_shop.py").write_text(SHOP)
    (tests / "sub").mkdir()
    (tests / "sub" / "test_sub.py").write_text(SUB)
    return pytester


def run(pytester: pytest.Pytester, backend: str, *args: str) -> pytest.RunResult:
    """One inner run: in this process for ``local``, a real subprocess with real workers for ``process``."""
    full = (*BACKENDS[backend], "-rs", *args)
    if backend == "local":
        return pytester.runpytest(*full)
    return pytester.runpytest_subprocess(*full)


def summary(counts: str) -> str:
    """The exact final line (``=`` on both sides, so ``1 passed`` never matches ``11 passed``)."""
    return f"=* {counts} in *s*=*"


SELECTIONS: dict[str, tuple[Sequence[str], list[str], str, list[str], str]] = {
    # name: (args, lines without --executor-with-deps, summary, lines with it, summary)
    "file": (
        ["tests/test_shop.py"],
        [CHECKOUT_LINE.format(PRICE3, "it")], "2 passed, 1 skipped",
        ["tests/test_prices.py::test_price[[]3[]] PASSED*"], "4 passed",
    ),
    "node id": (
        ["tests/test_shop.py::TestCart::test_checkout"],
        [CHECKOUT_LINE.format(f"{ADD_ITEM}; {PRICE3}", "them")], "1 skipped",
        ["tests/test_shop.py::test_add_item PASSED*", "tests/test_prices.py::test_price[[]3[]] PASSED*"], "3 passed",
    ),
    "directory": (
        ["tests/sub"],
        ["SKIPPED [[]1[]] tests/sub/test_sub.py:4: dependency tests/test_prices.py::test_price[[]1[]] was not "
         "selected (use --executor-with-deps to run it)"], "1 skipped",
        ["tests/test_prices.py::test_price[[]1[]] PASSED*", "tests/sub/test_sub.py::test_deep PASSED*"], "2 passed",
    ),
    "-k": (
        ["tests", "-k", "checkout"],
        [CHECKOUT_LINE.format(f"{ADD_ITEM}; {PRICE3}", "them")], "1 skipped, 7 deselected",
        ["tests/test_shop.py::test_add_item PASSED*", "tests/test_prices.py::test_price[[]3[]] PASSED*"],
        "3 passed, 5 deselected",
    ),
    "-m": (
        ["tests", "-m", "slow"],
        [CHECKOUT_LINE.format(f"{ADD_ITEM}; {PRICE3}", "them")], "1 skipped, 7 deselected",
        ["tests/test_shop.py::TestCart::test_checkout PASSED*"], "3 passed, 5 deselected",
    ),
    "--deselect": (
        ["tests", "--deselect", "tests/test_shop.py::test_add_item"],
        [CHECKOUT_LINE.format(ADD_ITEM, "it")], "6 passed, 1 skipped, 1 deselected",
        ["tests/test_shop.py::test_add_item PASSED*"], "8 passed",
    ),
    "--ignore": (
        ["tests", "--ignore", "tests/test_prices.py"],
        ["SKIPPED [[]1[]] tests/sub/test_sub.py:4: dependency tests/test_prices.py::test_price[[]1[]] was not "
         "selected (use --executor-with-deps to run it)",
         CHECKOUT_LINE.format(PRICE3, "it")], "2 passed, 2 skipped",
        ["tests/test_prices.py::test_price[[]1[]] PASSED*", "tests/test_prices.py::test_price[[]3[]] PASSED*"],
        "6 passed",
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_dependency_outside_the_selection(shop: pytest.Pytester, backend: str, selection: str) -> None:
    args, without, counts, with_deps, counts_with = SELECTIONS[selection]
    result = run(shop, backend, *args)
    result.stdout.fnmatch_lines([*without, summary(counts)])
    assert result.ret == 0
    pulled = run(shop, backend, *args, "-v", "--executor-with-deps")
    pulled.stdout.fnmatch_lines_random(with_deps)  # pulled-in tests run in parallel on workers
    pulled.stdout.fnmatch_lines([summary(counts_with)])
    pulled.stdout.no_fnmatch_line("*was not selected*")
    assert pulled.ret == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_failed_runs_the_dependent_and_pulls_its_dependencies(shop: pytest.Pytester, backend: str) -> None:
    fail = shop.path / "fail-checkout"
    fail.touch()
    first = run(shop, backend, "tests")
    first.stdout.fnmatch_lines([summary("1 failed, 7 passed")])
    fail.unlink()
    pulled = run(shop, backend, "tests", "--lf", "-v", "--executor-with-deps")
    pulled.stdout.fnmatch_lines_random(
        ["tests/test_shop.py::test_add_item PASSED*", "tests/test_prices.py::test_price[[]3[]] PASSED*"]
    )
    pulled.stdout.fnmatch_lines([summary("3 passed, 5 deselected")])
    fail.touch()
    run(shop, backend, "tests").stdout.fnmatch_lines([summary("1 failed, 7 passed")])
    fail.unlink()
    again = run(shop, backend, "tests", "--lf")
    again.stdout.fnmatch_lines([CHECKOUT_LINE.format(f"{ADD_ITEM}; {PRICE3}", "them"), summary("1 skipped, 7 deselected")])


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_first_and_stepwise_keep_dependencies_first(shop: pytest.Pytester, backend: str) -> None:
    (shop.path / "fail-checkout").touch()
    stopped = run(shop, backend, "tests", "--sw")
    stopped.stdout.fnmatch_lines([summary("1 failed, *passed")])
    (shop.path / "fail-checkout").unlink()
    failed_first = run(shop, backend, "tests", "--ff", "-v")
    failed_first.stdout.fnmatch_lines(
        ["tests/test_shop.py::test_add_item PASSED*", "tests/test_shop.py::TestCart::test_checkout PASSED*",
         summary("8 passed")],
        consecutive=False,
    )
    (shop.path / "fail-checkout").touch()
    run(shop, backend, "tests", "--sw")
    (shop.path / "fail-checkout").unlink()
    stepwise = run(shop, backend, "tests", "--sw")
    stepwise.stdout.fnmatch_lines([CHECKOUT_LINE.format(f"{ADD_ITEM}; {PRICE3}", "them")])
    assert stepwise.ret == 0


def test_unknown_name_is_a_usage_error_without_collecting_other_files(shop: pytest.Pytester) -> None:
    (shop.path / "tests" / "test_boom.py").write_text(BOOM)
    (shop.path / "tests" / "test_shop.py").write_text(
        SHOP.replace('"test_prices.py::test_price[3]"', '"test_prices.py::test_prise[3]"')
    )
    result = shop.runpytest("tests/test_shop.py")
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid job markers:",
            "  tests/test_shop.py::TestCart::test_checkout: job(after='test_prices.py::test_prise[3]'): "
            "'test_prices.py::test_prise[3]' matches no test; did you mean 'test_prices.py::test_price[3]', "
            "'test_prices.py::test_price[1]', 'test_prices.py::test_price[2]'?",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (shop.path / "boom-was-imported").exists()


def test_module_dependency_is_collected_once_with_the_conftest_fixtures(shop: pytest.Pytester) -> None:
    (shop.path / "tests" / "test_shop.py").write_text(SHOP.replace('"test_prices.py::test_price[3]"', '"test_prices.py"'))
    result = shop.runpytest("tests/test_shop.py", "--executor-with-deps", "-v")
    result.stdout.fnmatch_lines(
        [
            "executor: --executor-with-deps added 4 dependencies not selected: tests/test_prices.py::test_price[[]1[]], "
            "tests/test_prices.py::test_price[[]2[]], tests/test_prices.py::test_price[[]3[]], tests/test_prices.py::test_other",
            summary("7 passed"),
        ],
        consecutive=False,
    )
