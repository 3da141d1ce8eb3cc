"""Live progress seen through a real pseudo-terminal.

The suite under test blocks until this test releases it, and this test
releases it only once the screen shows the workers busy — a handshake through
the terminal itself, so nothing depends on timing.  The byte stream is replayed
on a small terminal emulator (:mod:`tests.plugin.vt_screen`) to check what a
user would see: the region redrawn in place, and at the end exactly the output
of a plain run (nothing left behind, the summary intact).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.foreign_plugins import OFF as FOREIGN_PLUGINS_OFF
from tests.plugin.vt_screen import Screen

pytestmark = pytest.mark.timeout(90)

COLUMNS, ROWS = 200, 30  # wide enough that no line wraps, however deep the temporary directory (xdist adds a level)

SUITE = """
import os, time
import pytest

RELEASE = os.environ["RELEASE_FILE"]


def wait_for_release():
    deadline = time.monotonic() + 60
    while not os.path.exists(RELEASE):
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)


# More held tests than a worker prefetches, first in line: every worker gets
# one before any can finish.
@pytest.mark.parametrize("n", range(8))
def test_held(n):
    wait_for_release()


@pytest.mark.parametrize("i", range(6))
def test_quick(i):
    assert i >= 0


def test_fails():
    assert 1 == 2
"""


class PtyRun:
    """A pytest subprocess on a pseudo-terminal, its output replayed on a Screen."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.master = master
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,  # one group to kill if the test fails
        )
        os.close(slave)
        self.raw = ""
        self.screen = Screen(COLUMNS)
        self.frames: list[list[str]] = []

    def _read(self, timeout: float) -> bool:
        """Read what is available; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        text = chunk.decode("utf-8", errors="replace")
        self.raw += text
        # Replay frame by frame: each redraw of the region ends a frame.
        for piece in re.split(r"(?<=\x1b\[\?2026l)", text):
            if piece:
                self.screen.feed(piece)
                self.frames.append(self.screen.lines())
        return True

    def expect(self, predicate: Callable[[list[str]], bool], timeout: float = 30) -> None:
        """Read until the screen satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while not predicate(self.screen.lines()):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                pytest.fail(
                    "screen never matched; it shows:\n" + "\n".join(self.screen.lines())
                )

    def finish(self, timeout: float = 60) -> int:
        """Read to the end; return the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(0.5):
            if time.monotonic() > deadline:
                pytest.fail("pytest did not finish:\n" + "\n".join(self.screen.lines()))
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        """Leave nothing behind."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)


def terminal_env(release: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env.update(PYTEST_ADDOPTS=FOREIGN_PLUGINS_OFF, TERM="xterm-256color", RELEASE_FILE=str(release), COLUMNS=str(COLUMNS))
    env.pop("NO_COLOR", None)
    return env


_PROGRESS = re.compile(r"^(\S+\.py )([.FEsxX]+)(\s+\[\s*\d+%\])$")


def normalise(lines: Sequence[str]) -> list[str]:
    """Drop what differs between two runs of the same suite: timings, and the order in which
    parallel workers finished (the letters of a progress line, sorted)."""
    timeless = [re.sub(r"\d+(\.\d+)?s\b", "<t>", line) for line in lines]
    return [_PROGRESS.sub(lambda m: m[1] + "".join(sorted(m[2])) + m[3], line) for line in timeless]


def run_on_pty(args: Sequence[str], cwd: Path, release: Path, busy: list[str]) -> PtyRun:
    """Run, release the held tests once ``busy`` workers show them, read to the end."""
    run = PtyRun(args, cwd, terminal_env(release))
    try:
        def workers_busy(lines: list[str]) -> bool:
            held = [line for line in lines if "test_held[" in line]
            return all(any(line.lstrip().startswith(w + " ") for line in held) for w in busy)

        run.expect(workers_busy)
        release.touch()
        run.finish()
    finally:
        run.kill()
    return run


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_live=SUITE)
    return pytester.path


COMMON = ["-p", "no:cacheprovider", "-p", "no:asyncio", "--executor-table=none"]


@pytest.mark.parametrize(
    ("backend_args", "busy"),
    [
        (["--executor-backend=thread"], ["main/thread"]),
        (["--executor-backend=process", "--executor-workers=2"], ["w0", "w1"]),
    ],
    ids=["thread", "process"],
)
def test_live_lines_update_in_place_and_leave_the_plain_output(
    suite: Path, tmp_path: Path, backend_args: list[str], busy: list[str]
) -> None:
    live = run_on_pty([*COMMON, *backend_args], suite, tmp_path / "release-live", busy)
    assert live.process.returncode == 1  # test_fails

    # Redrawn in place: cursor moved up, and a frame showed each worker busy
    # with its elapsed time, plus the totals line.
    assert re.search(r"\x1b\[\d+A", live.raw)

    def shows_all_busy(frame: list[str]) -> bool:
        line = r"\s+{}\s+\d+\.\ds\s+test_live\.py::test_held\["
        return all(
            any(re.match(line.format(re.escape(w)), x) for x in frame) for w in busy
        )

    busy_frames = [frame for frame in live.frames if shows_all_busy(frame)]
    assert busy_frames, "no frame showed every worker running a held test"
    assert any(re.match(r"executor: \d+/15 done", x) for x in busy_frames[-1])

    # The same run without a terminal-capable environment prints plain lines;
    # after the live run the screen must show exactly that (nothing left over).
    plain_env = terminal_env(tmp_path / "release-plain")
    (tmp_path / "release-plain").touch()
    plain_env["CI"] = "true"
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", *COMMON, *backend_args, "--color=no"],
        cwd=suite, env=plain_env, capture_output=True, text=True, timeout=60,
    )
    assert "\x1b[" not in plain.stdout
    final = live.screen.lines()
    assert not any(line.startswith("executor:") for line in final)
    assert re.search(r"=+ 1 failed, 14 passed in ", final[-1])
    assert normalise(final) == normalise(plain.stdout.splitlines())


def test_quiet_run_gets_plain_lines(suite: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    run = PtyRun([*COMMON, "-q", "--executor-backend=thread"], suite, terminal_env(release))
    try:
        run.finish()
    finally:
        run.kill()
    assert not re.search(r"\x1b\[\d+A", run.raw)
    assert "executor:" not in run.raw
    assert run.screen.lines()[-1].startswith("1 failed, 14 passed in ")


def test_ctrl_c_erases_the_region_before_the_interrupt_summary(
    suite: Path, tmp_path: Path
) -> None:
    run = PtyRun([*COMMON, "--executor-backend=local"], suite, terminal_env(tmp_path / "never"))
    try:
        run.expect(lambda lines: any(re.match(r"\s+main\s+\d+\.\ds\s+test_live", x) for x in lines))
        os.killpg(run.process.pid, signal.SIGINT)
        assert run.finish() == pytest.ExitCode.INTERRUPTED
    finally:
        run.kill()
    final = run.screen.lines()
    assert not any(line.startswith("executor:") or "test_held[" in line for line in final[-12:])
    assert any("KeyboardInterrupt" in line for line in final)
    assert re.search(r"=+ no tests ran in .*=+|=+ .*interrupted.*=+", final[-1]), final[-1]
