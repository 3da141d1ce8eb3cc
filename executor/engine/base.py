"""``ExecutorObj``: the base of engines and jobs (an object with a unique ``id``), as in executor-engine."""

from __future__ import annotations

import uuid

__all__ = ["ExecutorObj"]


class ExecutorObj:
    """An object with a unique string ``id`` (a UUID4)."""

    id: str

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
