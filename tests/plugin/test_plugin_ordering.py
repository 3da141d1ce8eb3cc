"""Acceptance: after= ordering, skip reasons, selection, -x, --lf/--ff, junitxml."""

from __future__ import annotations

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)

FLOW = """
import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

@pytest.mark.job(after="test_create")
def test_use():
    pass

def test_create():
    pass

class TestChain:
    @pytest.mark.job(after="test_one")
    def test_two(self):
        pass

    def test_one(self):
        pass

@pytest.mark.job(after="test_b.py::test_late")
def test_needs_other_module():
    pass
"""

OTHER = """
def test_late():
    pass
"""


def test_dependents_move_after_their_dependencies_across_classes_and_modules(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_a=FLOW, test_b=OTHER)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "test_a.py::test_create PASSED*",
            "test_a.py::test_use PASSED*",
            "test_a.py::TestChain::test_one PASSED*",
            "test_a.py::TestChain::test_two PASSED*",
            "test_b.py::test_late PASSED*",
            "test_a.py::test_needs_other_module PASSED*",
        ]
    )


def test_parametrised_names_and_skip_reasons(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_p(n):
            assert n != 2

        @pytest.mark.job(after="test_p[1]")
        def test_after_one():
            pass

        @pytest.mark.job(after="test_p")
        def test_after_all():
            pass

        @pytest.mark.job(after="test_after_all")
        def test_cascade():
            pass

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        @pytest.mark.job(after="test_skipped")
        def test_after_skipped():
            pass

        @pytest.fixture
        def broken():
            raise RuntimeError("boom")

        def test_error(broken):
            pass

        @pytest.mark.job(after=["test_error"])
        def test_after_error():
            pass
        """
    )
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1, skipped=5, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED [[]1] test_*.py:*: dependency test_*.py::test_p[[]2] failed",
            "SKIPPED [[]1] test_*.py:*: dependency test_*.py::test_after_all was skipped",
            "SKIPPED [[]1] test_*.py:*: dependency test_*.py::test_skipped was skipped",
            "SKIPPED [[]1] test_*.py:*: dependency test_*.py::test_error errored",
        ]
    )


SELECTION = """
import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

def test_base():
    pass

@pytest.mark.job(after="test_base")
def test_top():
    pass

def test_unrelated():
    pass
"""


def test_deselected_dependency_skips_the_dependent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sel=SELECTION)
    result = pytester.runpytest("-k", "top or unrelated", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED * dependency test_sel.py::test_base was not selected (use --executor-with-deps*"]
    )


def test_with_deps_pulls_deselected_dependencies_back(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sel=SELECTION)
    result = pytester.runpytest(
        "-k", "top", "--executor-with-deps", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "executor: --executor-with-deps added 1 dependency not selected: test_sel.py::test_base",
            "test_sel.py::test_base PASSED*",
            "test_sel.py::test_top PASSED*",
        ]
    )


def test_with_deps_via_ini_and_transitively(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nexecutor_with_deps = true\n")
    pytester.makepyfile(
        """
        import pytest

        def test_a():
            pass

        @pytest.mark.job(after="test_a")
        def test_b():
            pass

        @pytest.mark.job(after="test_b")
        def test_c():
            pass
        """
    )
    result = pytester.runpytest("-k", "test_c", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*::test_a PASSED*", "*::test_b PASSED*", "*::test_c PASSED*"])


def test_exitfirst_stops_and_marks_the_rest_cancelled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_ok():
            pass

        def test_bad():
            assert False

        @pytest.mark.job(after="test_ok")
        def test_never():
            pass
        """
    )
    report = pytester.path / "out.json"
    result = pytester.runpytest("-x", f"--executor-report={report}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    import json

    jobs = {job["test"].split("::")[-1]: job for job in json.loads(report.read_text())["jobs"]}
    assert jobs["test_never"]["status"] == "cancelled"
    assert jobs["test_bad"]["status"] == "failed"


def test_maxfail_counts_like_plain_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.job(after="test_b")
        def test_a():
            assert False

        def test_b():
            assert False

        def test_c():
            assert False
        """
    )
    result = pytester.runpytest("--maxfail=2", "-p", "no:cacheprovider")
    # test_b fails, test_a (after it) is skipped, test_c fails: the second failure stops.
    result.assert_outcomes(failed=2, skipped=1)


def test_last_failed_and_failed_first_keep_working(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_one():
            pass

        def test_two():
            assert os.environ.get("FIXED")

        @pytest.mark.job(after="test_one")
        def test_three():
            pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=2, failed=1)
    result = pytester.runpytest("--ff", "-v")
    result.assert_outcomes(passed=2, failed=1)
    # --ff moves test_two first; test_three still runs after test_one.
    result.stdout.fnmatch_lines(["*::test_two FAILED*", "*::test_one PASSED*", "*::test_three PASSED*"])
    monkeypatch.setenv("FIXED", "1")
    result = pytester.runpytest("--lf", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_two PASSED*"])
    result.stdout.no_fnmatch_line("*::test_one *")


def test_junitxml_counts_dependency_skips(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_fails():
            assert False

        @pytest.mark.job(after="test_fails")
        def test_dependent():
            pass
        """
    )
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--junitxml={xml}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1)
    text = xml.read_text()
    assert 'failures="1"' in text and 'skipped="1"' in text
    assert "dependency test_junitxml_counts_dependency_skips.py::test_fails failed" in text


def test_unmarked_tests_run_in_place_in_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        seen = []

        def test_1():
            seen.append(1)

        @pytest.mark.job(retries=1)
        def test_2():
            seen.append(2)

        def test_3():
            seen.append(3)
            assert seen == [1, 2, 3]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_session_and_module_fixtures_set_up_once_despite_reordering(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_fx="""
        import pytest
        calls = []

        @pytest.fixture(scope="module")
        def resource():
            calls.append("setup")
            yield
            calls.append("teardown")

        @pytest.mark.job(after="test_b")
        def test_a(resource):
            pass

        def test_b(resource):
            pass

        def test_c(resource):
            assert calls == ["setup"]
        """,
        test_zz="""
        from test_fx import calls

        def test_after_module():
            assert calls == ["setup", "teardown"]
        """,
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
