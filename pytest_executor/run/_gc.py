"""The cyclic garbage collector paused while the controller builds what lives as long as the run.

Planning a run, making its jobs and submitting them to the engine allocate a
few dozen objects per test, all of which stay alive until their test ends or
the run does.  Each growth of the heap by a quarter triggers a full collection
that walks everything alive and can free none of them: on 20,000 trivial
tests, pausing the collector meanwhile saved two of the controller's sixteen
full collections, about 0.3 s of its 2 s in them (pytest's own collection
phase is left alone).

At the controller's exit, when no test ran in it, the interpreter's own last
collection is skipped (:func:`skip_collection_at_exit`): it walks every object
still alive, some 200,000 once ``distributed`` is loaded, 0.3 to 0.5 s of a
run on a small machine, to find the cycles the end of the interpreter makes;
pytest has collected the run's garbage by then (its unraisable-exception check).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic garbage collector for the block (re-enabled after, unless it was off before)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache  # once per process is enough
def skip_collection_at_exit() -> None:
    """Have the interpreter's last collections skip every object alive when the exit handlers start.

    An exit handler registered now runs before those registered earlier (the
    plugins', dask's, coverage's): it moves every object alive then out of the
    collector's reach (``gc.freeze``).  The handlers still run, and objects
    freed by reference counting are still finalised; an object left alive in a
    cycle is not, as Python never promises at exit.  Only for a controller
    that ran no test: a test's leftovers keep the interpreter's usual exit.
    """
    atexit.register(gc.freeze)


__all__ = ["collector_paused", "skip_collection_at_exit"]
