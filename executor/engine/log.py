"""The engine's logger: a loguru logger (configure it with ``logger.add``/``logger.remove``).

The engine logs through this object only and never prints to stdout.
"""

from __future__ import annotations

from loguru import logger

__all__ = ["logger"]
