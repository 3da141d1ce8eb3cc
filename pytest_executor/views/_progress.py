"""Live per-worker progress for interactive terminals.

While the run goes on, a few lines below pytest's usual output show what each
worker is doing and how far the run is::

    tests/test_io.py ..F.
      w0   1.5s  tests/test_io.py::test_download[big]
      w1   0.2s  tests/test_db.py::test_migrate
    executor: 4/20 done · 1 failed · 3 passed · 2 running · 3.1s elapsed · ETA ~9.0s

The region is redrawn in place with ANSI cursor movement; pytest's own output
keeps flowing above it.  It is shown only when the terminal is interactive and
not quiet (no ``-q``, no ``-s``, not ``TERM=dumb``, no ``CI`` variable), so
logs and CI output stay plain pytest lines.

Three parts, each usable alone:

* :class:`ProgressBoard` — pure state and rendering (unit-testable).
* :class:`LiveRegion` — keeps a block of lines below the cursor of a terminal
  writer, underneath every write pytest makes.
* :class:`LiveProgress` — the :class:`ProgressSink` the run drives
  (``on_start`` / ``on_finish`` / ``close``): board + region + a throttled,
  event-driven redraw with a slow tick for the elapsed clocks.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, final

import pytest

from pytest_executor.views._timeline import natural_key

MIN_REDRAW_INTERVAL = 0.1
"""Seconds between two redraws of new content (10 Hz at most)."""
SLOW_TICK = 0.5
"""Seconds between redraws when nothing happens, to advance the clocks."""

_ERASE_BELOW = "\x1b[J"
_SYNC_BEGIN = "\x1b[?2026h"  # terminals that support it draw the update at once
_SYNC_END = "\x1b[?2026l"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ProgressSink(Protocol):
    """What the run tells a progress display; every backend drives it the same way."""

    def on_start(self, nodeid: str, worker: str) -> None:
        """``nodeid`` started on ``worker``."""

    def on_finish(self, nodeid: str, worker: str, outcome: str, duration: float) -> None:
        """``nodeid`` finished on ``worker`` (``duration`` = setup + call + teardown)."""

    def close(self) -> None:
        """The run is over: remove the display before pytest's summary."""


@final
@dataclass
class ProgressBoard:
    """What is running where and how far the run is; renders plain text lines."""

    total: int = 0
    """Items the run will execute (0 when unknown)."""
    started_at: float = field(default_factory=time.monotonic)
    running: dict[str, tuple[str, float]] = field(default_factory=dict)
    """worker -> (nodeid, monotonic start)."""
    workers: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=dict)
    finished: int = 0
    busy_seconds: float = 0.0
    """Sum of the durations of finished items (feeds the ETA)."""

    def start(self, nodeid: str, worker: str, now: float) -> None:
        """Record that ``worker`` began ``nodeid``."""
        self.workers.add(worker)
        self.running[worker] = (nodeid, now)

    def finish(self, nodeid: str, worker: str, outcome: str, duration: float) -> None:
        """Record a finished item; ``worker`` goes idle if it was running it."""
        self.workers.add(worker)
        if self.running.get(worker, ("",))[0] == nodeid:
            del self.running[worker]
        self.finished += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.busy_seconds += max(0.0, duration)

    def eta(self, now: float) -> float | None:
        """Seconds left, from the mean finished duration spread over the workers."""
        if not self.finished or not self.total:
            return None
        remaining = max(0, self.total - self.finished)
        mean = self.busy_seconds / self.finished
        # Running items are partly done already; count at most a mean's worth each.
        in_progress = sum(min(now - t0, mean) for _, t0 in self.running.values())
        return max(0.0, remaining * mean - in_progress) / max(1, len(self.workers))

    def lines(self, now: float, width: int, max_lines: int) -> list[str]:
        """The region's text: one line per worker, then the totals line."""
        workers = sorted(self.workers, key=natural_key)
        room = max(0, max_lines - 1)
        if len(workers) > room:
            hidden = len(workers) - max(0, room - 1)
            workers = workers[: max(0, room - 1)]
        else:
            hidden = 0
        name_width = max((len(w) for w in workers), default=0)
        lines = [self._worker_line(w, name_width, now, width) for w in workers]
        if hidden:
            lines.append(_fit(f"  … {hidden} more workers", width))
        lines.append(_fit(self._totals_line(now), width))
        return lines[-max_lines:] if max_lines > 0 else []

    def _worker_line(self, worker: str, name_width: int, now: float, width: int) -> str:
        head = f"  {worker:<{name_width}} "
        job = self.running.get(worker)
        if job is None:
            return _fit(head + "      idle", width)
        nodeid, t0 = job
        head += f"{_clock(now - t0):>6}  "
        return head + _fit_left(nodeid, width - len(head))

    def _totals_line(self, now: float) -> str:
        done = f"{self.finished}/{self.total}" if self.total else str(self.finished)
        parts = [f"executor: {done} done"]
        parts += [f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items())]
        parts.append(f"{len(self.running)} running")
        parts.append(f"{_clock(now - self.started_at)} elapsed")
        eta = self.eta(now)
        if eta is not None:
            parts.append(f"ETA ~{_clock(eta)}")
        return " · ".join(parts)


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` columns (keeping the start)."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _fit_left(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` columns keeping the end (the test's name)."""
    if width <= 1:
        return ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def visible_width(text: str) -> int:
    """Columns ``text`` takes on screen, ignoring ANSI escape sequences."""
    return len(_ANSI.sub("", text))


@final
class LiveRegion:
    """A block of lines kept just below the cursor of a terminal file.

    It replaces the terminal writer's file with itself; every write pytest makes
    goes through :meth:`write`.  Text that stays on the current line is passed
    through untouched (it cannot reach the region); text that moves to a new
    line first erases the region and then draws it again below, in one write.
    The cursor is always left where pytest's text ended, so pytest's own
    column bookkeeping stays right.
    """

    def __init__(self, raw: TextIO, width: Callable[[], int]) -> None:
        self._raw = raw
        self._width = width
        self._lock = threading.RLock()
        self._lines: list[str] = []
        self._column = 0  # width of the text after the cursor's line start

    @property
    def raw(self) -> TextIO:
        """The terminal file being wrapped."""
        return self._raw

    def show(self, lines: list[str]) -> None:
        """Replace the region's content on screen."""
        with self._lock:
            self._lines = list(lines)
            self._raw.write(_SYNC_BEGIN + _ERASE_BELOW + self._region() + _SYNC_END)
            self._raw.flush()

    def clear(self) -> None:
        """Remove the region from the screen for good."""
        with self._lock:
            if self._lines:
                self._raw.write(_ERASE_BELOW)
                self._raw.flush()
            self._lines = []

    def write(self, text: str) -> int:
        """File protocol: pytest's output, kept above the region."""
        with self._lock:
            moves_line = "\n" in text or (
                self._column + visible_width(text) >= self._width()
            )
            self._advance(text)
            if not self._lines or not moves_line:
                self._raw.write(text)
            else:
                self._raw.write(
                    _SYNC_BEGIN + _ERASE_BELOW + text + self._region() + _SYNC_END
                )
            # Unflushed text could be overtaken by a redraw from the ticker.
            self._raw.flush()
            return len(text)

    def flush(self) -> None:
        """File protocol."""
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:
        # isatty(), fileno(), encoding, ... of the real terminal.
        return getattr(self._raw, name)

    def _advance(self, text: str) -> None:
        tail = re.split(r"[\r\n]", text)[-1]
        if len(tail) == len(text):
            self._column += visible_width(text)
        else:
            self._column = visible_width(tail)

    def _region(self) -> str:
        """Draw the lines below the cursor, then return the cursor where it was."""
        if not self._lines:
            return ""
        width = max(1, self._width())
        column = self._column % width
        back = f"\x1b[{len(self._lines)}A\r" + (f"\x1b[{column}C" if column else "")
        return "\n" + "\n".join(self._lines) + back


@final
class LiveProgress:
    """The live display: a :class:`ProgressSink` drawing on a :class:`LiveRegion`."""

    def __init__(
        self,
        region: LiveRegion,
        *,
        total: int = 0,
        width: Callable[[], int],
        height: Callable[[], int],
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self._region = region
        self._board = ProgressBoard(total=total)
        self._width = width
        self._height = height
        self._on_close = on_close
        self._wake = threading.Condition()
        self._dirty = False
        self._closed = False
        self._last_draw = 0.0
        self._ticker = threading.Thread(
            target=self._tick, name="executor-progress", daemon=True
        )
        self._ticker.start()

    @property
    def board(self) -> ProgressBoard:
        """The state being displayed."""
        return self._board

    def set_total(self, total: int) -> None:
        """Number of items the run will execute, once known."""
        with self._wake:
            self._board.total = total
        self._changed()

    def on_start(self, nodeid: str, worker: str) -> None:
        """See :class:`ProgressSink`."""
        with self._wake:
            self._board.start(nodeid, worker, time.monotonic())
        self._changed()

    def on_finish(self, nodeid: str, worker: str, outcome: str, duration: float) -> None:
        """See :class:`ProgressSink`."""
        with self._wake:
            self._board.finish(nodeid, worker, outcome, duration)
        self._changed()

    def close(self) -> None:
        """Stop redrawing and erase the region; safe to call twice."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        self._ticker.join(timeout=5)
        self._region.clear()
        self._on_close()

    def _changed(self) -> None:
        """Draw now if the throttle allows, else let the ticker draw soon."""
        with self._wake:
            if self._closed:
                return
            if time.monotonic() - self._last_draw < MIN_REDRAW_INTERVAL:
                self._dirty = True
                self._wake.notify()
                return
        self._draw()

    def _draw(self) -> None:
        with self._wake:
            if self._closed:
                return
            now = time.monotonic()
            self._last_draw = now
            self._dirty = False
            lines = self._board.lines(now, self._width() - 1, max(1, self._height() - 2))
            # Draw under the condition's lock so close() cannot erase in between.
            self._region.show(lines)

    def _tick(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                delay = SLOW_TICK
                if self._dirty:
                    delay = self._last_draw + MIN_REDRAW_INTERVAL - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                if self._closed:
                    return
            self._draw()


def live_progress_wanted(config: pytest.Config) -> bool:
    """Whether this run may draw the live region (see the module docstring)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.get_verbosity() < 0:
        return False
    if config.getoption("capture", "fd") == "no":
        return False  # tests print straight to the terminal, through the region
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    writer = config.get_terminal_writer()
    raw = getattr(writer, "_file", None)
    return bool(raw is not None and hasattr(raw, "isatty") and raw.isatty())


def start_live_progress(config: pytest.Config, total: int = 0) -> LiveProgress | None:
    """Wrap the terminal writer's file in a :class:`LiveRegion` and start drawing.

    Returns ``None`` (plain pytest output) when :func:`live_progress_wanted` says no.
    """
    if not live_progress_wanted(config):
        return None
    writer = config.get_terminal_writer()
    original: TextIO = writer._file  # pytest's TerminalWriter keeps its file here
    terminal = _own_terminal_file(original)
    if terminal is None:
        return None

    def width() -> int:
        return int(writer.fullwidth)

    def height() -> int:
        try:
            return os.get_terminal_size(terminal.fileno()).lines
        except (OSError, ValueError):
            return shutil.get_terminal_size().lines

    region = LiveRegion(terminal, width)

    def restore() -> None:
        writer._file = original
        terminal.close()

    writer._file = region
    return LiveProgress(region, total=total, width=width, height=height, on_close=restore)


def _own_terminal_file(original: TextIO) -> TextIO | None:
    """A new file on the terminal device behind ``original``.

    While a test runs, pytest's capture points file descriptors 1 and 2 at
    temporary files; redraws from the ticker thread would land there.  A
    duplicate of the descriptor, taken now (capture is suspended between
    tests), keeps pointing at the terminal itself.
    """
    try:
        original.flush()
        fd = os.dup(original.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    encoding = getattr(original, "encoding", None) or "utf-8"
    return os.fdopen(fd, "w", encoding=encoding, errors="replace")
