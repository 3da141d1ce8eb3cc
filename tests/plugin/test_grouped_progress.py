"""Non-verbose progress on worker backends: one line per file, as in a serial run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)

ARGS = ("-p", "no:cacheprovider", "--executor-backend=process", "--executor-workers=2", "--executor-table=none")


def test_each_file_gets_one_line_and_a_lost_worker_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="""
        import os, time
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_a(n):
            time.sleep(0.05)

        def test_crash():
            os._exit(3)
        """,
        test_b="""
        import time
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_b(n):
            time.sleep(0.03)
        """,
        test_c="""
        def test_c():
            pass
        """,
    )
    result = pytester.runpytest_subprocess(*ARGS)
    lines = result.stdout.lines
    file_lines = [line for line in lines if line.startswith("test_")]
    assert sorted(line.split()[0] for line in file_lines) == ["test_a.py", "test_b.py", "test_c.py"], file_lines
    result.stdout.fnmatch_lines_random(
        ["test_a.py [.F][.F][.F][.F][.F] *[[]*%[]]", "test_b.py .... *[[]*%[]]", "test_c.py . *[[]*%[]]"]
    )
    assert sum(line.count("F") for line in file_lines) == 1
    assert file_lines[-1].endswith("[100%]")
    result.stdout.fnmatch_lines(["executor: worker w? lost: exit code 3"])
    result.stdout.fnmatch_lines(["=* 1 failed, 9 passed in *s =*"])


def test_verbose_keeps_one_line_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_v="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    result = pytester.runpytest_subprocess(*ARGS, "-v")
    result.stdout.fnmatch_lines_random(["test_v.py::test_one PASSED *", "test_v.py::test_two PASSED *"])
