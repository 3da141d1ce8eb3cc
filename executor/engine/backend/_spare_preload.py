"""Named in a fork server's preload list, and imported nowhere else: each process it forks gets a spare zygote.

See :mod:`._spare`.  ``multiprocessing`` runs the hook registered here in each
process the server starts, before that process runs anything of its own.
"""

from __future__ import annotations

import multiprocessing.util
import os

from ._spare import fork_spare

_SERVER_PID = os.getpid()
"""The fork server's pid: only its own children fork a spare."""


def _fork_spare(_: object) -> None:
    fork_spare(_SERVER_PID)


class _Registration:
    """What ``multiprocessing`` files the hook under (it keeps a weak reference: this module keeps the object)."""


_REGISTRATION = _Registration()
multiprocessing.util.register_after_fork(_REGISTRATION, _fork_spare)
