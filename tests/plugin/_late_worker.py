"""A suite that passes only if a worker that becomes ready late still gets work (process and dask backends).

test_a and test_b each wait until the other has started, so they pass only on
two workers at once; the second worker session collects only after test_a
started, when the first one, warmed up by tiny tests, would prefetch test_b
behind test_a if nothing held it back.
"""

LATE_SESSION_CONFTEST = """
import os
import time
from pathlib import Path

# Where the sessions meet: a folder named in meet-dir.txt when the sessions run from copies of
# their own (the dask backend ships one to each worker), else the suite's folder.
_POINTER = Path(__file__).parent / "meet-dir.txt"
HERE = Path(_POINTER.read_text()) if _POINTER.exists() else Path(__file__).parent


def wait_for(name, who):
    # A bounded wait on a file another process writes (polled, not timed).
    deadline = time.monotonic() + 30
    while not (HERE / name).exists():
        assert time.monotonic() < deadline, f"{who}: {name} did not appear within 30 s"
        time.sleep(0.01)


if os.environ.get("PYTEST_EXECUTOR_WORKER"):
    try:
        os.close(os.open(HERE / "first-session", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        # The second session collects only once the first one runs test_a.
        wait_for("a-started", "second session")
"""

RENDEZVOUS_SUITE = """
import os

import pytest
from conftest import HERE, wait_for


@pytest.mark.parametrize("n", range(6))
def test_tiny(n):
    pass


def meet(me, other):
    (HERE / f"{me}-started").write_text(os.environ["PYTEST_EXECUTOR_WORKER"])
    wait_for(f"{other}-started", me)


def test_a():
    meet("a", "b")


def test_b():
    meet("b", "a")
"""
