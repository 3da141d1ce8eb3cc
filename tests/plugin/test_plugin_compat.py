"""Acceptance: inert by default, help/markers, and real-world pytest setups."""

from __future__ import annotations

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(90)


def test_inert_without_option_or_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*executor jobs*")
    # nothing of the plugin's; Python's own bytecode cache is there unless PYTHONDONTWRITEBYTECODE is set
    assert [path.name for path in pytester.path.iterdir() if path.name != "__pycache__"] == [
        "test_inert_without_option_or_marker.py"
    ]


def test_disabled_with_no_executor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:executor", "--executor-table=all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --executor-table=all*"])


def test_help_groups_options_with_ini_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "pytest-executor: run tests as engine jobs:",
            "  --executor-backend={local,thread,process,forked,subprocess,dask}",
            "*--executor-workers=N|auto*",
            "*--executor-with-deps*",
        ]
    )
    result.stdout.fnmatch_lines(["*executor_backend (string):*", "*executor_with_deps (bool):*"])


def test_markers_lists_job(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.job(backend=None, after=(), condition=None, retries=0, timeout=None, exclusive=False):*"])


@pytest.mark.parametrize("backend", ["local", "process"])
def test_strict_markers_strict_config_warnings_as_errors_importlib(
    pytester: pytest.Pytester, backend: str
) -> None:
    pytester.makeini(
        "[pytest]\naddopts = --strict-markers --strict-config -W error\n"
        "executor_table = all\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_one="""
        import pytest

        @pytest.mark.job(after="test_two")
        def test_one():
            pass

        def test_two():
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--import-mode=importlib", f"--executor-backend={backend}"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == 0


def test_unittest_xfail_skip_and_subtests_count_like_plain_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mix="""
        import unittest
        import pytest

        class TestCase(unittest.TestCase):
            def test_ok(self):
                self.assertTrue(True)

            @unittest.skip("unittest skip")
            def test_skip(self):
                pass

            def test_fail(self):
                self.assertEqual(1, 2)

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed?")
        def test_xpass():
            pass

        @pytest.mark.skipif(True, reason="never here")
        def test_skipif():
            pass

        @pytest.mark.job(after="test_xpass")
        def test_after_xpass():
            pass

        @pytest.mark.job(after="test_xfail")
        def test_after_xfail():
            pass
        """
    )
    plain = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:executor", "-k", "not after")
    plain_counts = plain.parseoutcomes()
    active = pytester.runpytest("-p", "no:cacheprovider", "--executor-backend=local", "-k", "not after")
    assert active.parseoutcomes() == plain_counts
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=2, failed=1, skipped=3, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(["SKIPPED * dependency test_mix.py::test_xfail xfailed"])


def test_thread_backend_counts_like_plain_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mix="""
        import unittest
        import pytest

        class TestCase(unittest.TestCase):
            def test_ok(self):
                pass

            def test_fail(self):
                self.fail("no")

        @pytest.mark.xfail
        def test_xfail():
            assert False

        @pytest.mark.parametrize("n", range(3))
        def test_p(n):
            assert n < 2
        """
    )
    plain = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:executor").parseoutcomes()
    threaded = pytester.runpytest("-p", "no:cacheprovider", "--executor-backend=thread").parseoutcomes()
    assert threaded == plain
