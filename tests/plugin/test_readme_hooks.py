"""The README's hook examples work as written, with the plugin and with ``-p no:executor``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[2] / "README.md"


def hook_example() -> str:
    """The python block under the README's "Hooks" heading."""
    section = README.read_text(encoding="utf-8").split("### Hooks", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python example under ### Hooks"
    return match.group(1)


SUITE = """
import pytest

@pytest.mark.isolated
def test_isolated():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(hook_example())
    pytester.makeini("[pytest]\nmarkers = isolated: run in a fresh process\n")
    pytester.makepyfile(test_hooks=SUITE)
    return pytester


def test_hooks_run_without_the_plugin(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("-p", "no:executor", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["=* 2 passed in *s =*"])
    assert result.ret == 0


def test_hooks_are_called_with_the_plugin(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--executor-table=none")
    result.stdout.fnmatch_lines_random(
        [
            "planned test_hooks.py::test_isolated subprocess []",
            "planned test_hooks.py::test_plain local []",
            "*test_hooks.py::test_plain passed 1 main",
            "*test_hooks.py::test_isolated passed 1 s0",
        ]
    )
    result.stdout.fnmatch_lines(["=* 2 passed in *s =*"])
