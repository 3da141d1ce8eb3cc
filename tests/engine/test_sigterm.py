"""``executor._sigterm``: a process's SIGTERM handler is not kept by the children it forks without exec."""

from __future__ import annotations

import os
import signal
import time

import pytest

from executor._sigterm import handle_sigterm

pytestmark = pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.register_at_fork (POSIX)")


def test_a_forked_child_ends_on_sigterm_by_default_and_the_parent_keeps_its_handler() -> None:
    heard: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    handle_sigterm(lambda signum, frame: heard.append(signum))
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: says what it has, then waits to be terminated
            try:
                blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
                os.write(write, b"default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not blocked else b"kept")
                time.sleep(60)  # SIGTERM ends it long before
            finally:
                os._exit(3)
        os.close(write)
        assert os.read(read, 16) == b"default"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
        os.close(read)
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        os.kill(os.getpid(), signal.SIGTERM)
        assert heard == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
