"""LocalJob: runs its function directly on the engine's event loop thread."""

from __future__ import annotations

from .base import Job


class LocalJob(Job):
    """A job called in the engine's own thread (cheapest; must not block for long).

    Coroutine functions are awaited on the engine loop; generator functions
    are stepped in the thread that iterates the result.
    """

    resource_kind = "local"
