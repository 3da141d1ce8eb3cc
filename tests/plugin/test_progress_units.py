"""Unit tests of the live progress parts: the board, the region, the throttle."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import pytest

from pytest_executor.views._progress import LiveProgress, LiveRegion, ProgressBoard
from tests.plugin.vt_screen import Screen


class Terminal(io.StringIO):
    """A terminal file whose output is replayed on a :class:`Screen`."""

    def __init__(self, width: int = 60) -> None:
        super().__init__()
        self.screen = Screen(width)
        self.writes = 0
        self.lock = threading.Condition()

    def write(self, text: str) -> int:
        with self.lock:
            self.screen.feed(text)
            self.writes += 1
            self.lock.notify_all()
        return super().write(text)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> bool:
        """Block until ``predicate()`` holds after some write, or ``timeout``."""
        with self.lock:
            return self.lock.wait_for(predicate, timeout)


def test_board_shows_one_line_per_worker_and_totals() -> None:
    board = ProgressBoard(total=4, started_at=0.0)
    board.start("t.py::a", "w1", now=0.0)
    board.start("t.py::b", "w0", now=1.0)
    board.finish("t.py::b", "w0", "passed", 2.0)
    lines = board.lines(now=3.0, width=80, max_lines=10)
    assert lines[0] == "  w0       idle"
    assert lines[1] == "  w1   3.0s  t.py::a"
    # 3 left at 2 s each over 2 workers, minus the running job's 2 s head start.
    assert lines[2] == (
        "executor: 1/4 done · 1 passed · 1 running · 3.0s elapsed · ETA ~2.0s"
    )


def test_board_cuts_long_ids_from_the_left_and_hides_extra_workers() -> None:
    board = ProgressBoard(total=0, started_at=0.0)
    for i in range(6):
        board.start(f"tests/very/long/path/test_mod.py::test_number_{i}", f"w{i}", 0.0)
    lines = board.lines(now=0.0, width=30, max_lines=4)
    assert len(lines) == 4
    assert all(len(line) <= 30 for line in lines)
    assert lines[0].endswith("test_number_0") and "…" in lines[0]
    assert lines[2] == "  … 4 more workers"
    assert lines[3].startswith("executor: 0 done")


def test_region_stays_below_pytest_output() -> None:
    term = Terminal()
    region = LiveRegion(term, width=lambda: 60)
    region.write("t.py ")
    region.show(["  w0  t.py::a", "totals 0"])
    region.write(".")  # stays on the line: passed straight through
    region.write(".")
    region.show(["  w0  t.py::b", "totals 2"])
    region.write("\nu.py F")
    region.show(["  w0  u.py::c", "totals 3"])
    assert term.screen.lines() == ["t.py ..", "u.py F", "  w0  u.py::c", "totals 3"]
    # The cursor sits after pytest's text, not inside the region.
    assert (term.screen.row, term.screen.col) == (1, 6)
    region.clear()
    region.write("\n=== 3 passed ===\n")
    assert term.screen.lines() == ["t.py ..", "u.py F", "=== 3 passed ==="]


def test_region_handles_text_reaching_the_right_margin() -> None:
    term = Terminal(width=20)
    region = LiveRegion(term, width=lambda: 20)
    region.show(["status"])
    region.write("x" * 25)  # wraps: must redraw the region below the new row
    assert term.screen.lines() == ["x" * 20, "x" * 5, "status"]


def test_live_progress_throttles_bursts_and_erases_on_close() -> None:
    term = Terminal(width=80)
    region = LiveRegion(term, width=lambda: 80)
    live = LiveProgress(region, total=100, width=lambda: 80, height=lambda: 24)
    try:
        writes_before = term.writes
        for i in range(100):  # a burst far faster than 10 Hz
            live.on_start(f"t.py::t{i}", "w0")
            live.on_finish(f"t.py::t{i}", "w0", "passed", 0.001)
        burst_writes = term.writes - writes_before
        # The first event draws at once; the rest wait for the throttle
        # (200 events would need 2 s for 20 draws at 10 Hz).
        assert 1 <= burst_writes <= 20
        # The ticker draws the pending update without any further event.
        assert term.wait_for(lambda: any("100/100 done" in x for x in term.screen.lines()))
    finally:
        live.close()
    assert term.screen.lines() == []
    live.close()  # idempotent


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_finish_of_other_item_keeps_worker_busy(outcome: str) -> None:
    board = ProgressBoard()
    board.start("a", "w0", 0.0)
    board.finish("b", "w0", outcome, 1.0)  # a late finish of a previous item
    assert board.running == {"w0": ("a", 0.0)}
    assert board.outcomes == {outcome: 1}
