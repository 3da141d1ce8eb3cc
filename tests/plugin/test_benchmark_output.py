"""A failing benchmarked function's traceback shows the user's frames only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)


def test_traceback_of_a_failing_benchmarked_function_hides_our_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_tb="""
        def broken(n):
            raise ValueError("bad input %d" % n)

        def test_bench(job_benchmark):
            job_benchmark(broken, 3)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.stdout.fnmatch_lines(
        [
            ">       job_benchmark(broken, 3)",
            "",
            "test_tb.py:5: ",
            "_ _ _ *",
            "",
            "n = 3",
            "",
            "    def broken(n):",
            '>       raise ValueError("bad input %d" % n)',
            "E       ValueError: bad input 3",
            "",
            "test_tb.py:2: ValueError",
        ]
    )
    result.stdout.no_fnmatch_line("*pytest_executor*")
