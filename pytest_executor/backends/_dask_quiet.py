"""Preloaded by the fork server of a run's own LocalCluster: its workers leave out one shutdown race.

A worker closing at the end of a run may have a heartbeat in flight; the
heartbeat then fails, on the worker's own connection pool, which is closing,
or on the stream the scheduler closed as it went away, and distributed logs
that as an error with its traceback, on the run's stderr.  Nothing was lost:
the scheduler of the run's own cluster lives in the controller, so its
connections close only when the run ends (or when the controller dies, and
then its workers die with it).  Forked from the server, every worker has
this filter on its ``distributed.worker`` logger; a heartbeat that fails for
any other reason (a timeout, a scheduler too busy to answer) is still logged.
"""

from __future__ import annotations

import logging


class ClosingPoolHeartbeat(logging.Filter):
    """Drops "Failed to communicate with scheduler during heartbeat" when the cause is a closed comm."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one record, True for every other."""
        if not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "CommClosedError"


_FILTER = ClosingPoolHeartbeat()
logging.getLogger("distributed.worker").addFilter(_FILTER)

__all__ = ["ClosingPoolHeartbeat"]
