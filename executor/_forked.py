"""A ``subprocess.Popen`` look-alike for a child made with ``os.fork``.

Shared by the engine's process pool (its forked zygote) and the pytest
plugin's process backend (its forked workers). Kept free of heavy imports so
the plugin can use it without loading the engine.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import final

from ._pidfd import close_pidfd, open_pidfd


@final
class ForkedProcess:
    """``pid``, ``returncode``, ``poll()`` and ``wait()`` of a forked child of this process.

    ``unknown_exit`` is the return code reported when the child was reaped by
    someone else, so how it ended cannot be known.
    """

    def __init__(self, pid: int, unknown_exit: int = -1) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._unknown_exit = unknown_exit

    def poll(self) -> int | None:
        """The exit code once the child has exited (negative: killed by that signal), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = self._unknown_exit
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = open_pidfd(self.pid) if self.poll() is None else None
        try:
            if pidfd is not None:  # sleep until it exits (or the timeout)
                select.select([pidfd], [], [], timeout)
            while self.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(f"forked process {self.pid}", timeout or 0.0)
                time.sleep(0.001)
        finally:
            close_pidfd(pidfd)
        assert self.returncode is not None
        return self.returncode
