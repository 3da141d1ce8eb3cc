"""Preloaded by the fork server of a run's own LocalCluster: its workers leave out one shutdown race.

A worker closing at the end of a run may have a heartbeat in flight; the
heartbeat then fails on the worker's own connection pool, which is closing,
and distributed logs that as an error with its traceback, on the run's
stderr.  Nothing was lost: the worker was going away.  Forked from the server,
every worker has this filter on its ``distributed.worker`` logger; any other
heartbeat failure (a scheduler really gone) is still logged.
"""

from __future__ import annotations

import logging


class ClosingPoolHeartbeat(logging.Filter):
    """Drops "Failed to communicate with scheduler during heartbeat" when the cause is the pool closing."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that one record, True for every other."""
        if not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (type(error).__name__ == "CommClosedError" and "ConnectionPool closing" in str(error))


_FILTER = ClosingPoolHeartbeat()
logging.getLogger("distributed.worker").addFilter(_FILTER)

__all__ = ["ClosingPoolHeartbeat"]
