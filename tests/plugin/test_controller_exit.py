"""The controller's exit: when every test ran in a worker, its last garbage collection skips what is alive.

Checked in real pytest processes: a conftest's exit handler (registered before
the plugin's, so it runs after it) records how many objects were frozen out of
the collector's reach when it ran.
"""

from __future__ import annotations

import pytest

CONFTEST = """
import atexit
import gc
import os


def _record():
    with open(os.environ["FROZEN_RECORD"], "w") as out:
        out.write(str(gc.get_freeze_count()))


atexit.register(_record)
"""


@pytest.mark.parametrize(
    ("backend", "skipped"), [("process", True), ("local", False)], ids=["tests-in-workers", "tests-in-controller"]
)
def test_last_collection_is_skipped_only_when_no_test_ran_in_the_controller(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str, skipped: bool
) -> None:
    record = pytester.path / "frozen.txt"
    monkeypatch.setenv("FROZEN_RECORD", str(record))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=1", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert (int(record.read_text()) > 0) is skipped
