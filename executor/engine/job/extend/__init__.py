"""Extended job types: shell commands, web apps, sentinels and cron schedules.

``SubprocessJob`` runs a shell command, ``WebappJob`` a web server on a local
port, ``SentinelJob`` submits a job each time a condition becomes true and
``CronJob`` does so on a schedule built with the helpers below
(``every``, ``daily``, ``hourly``, ``weekly`` and the clock/weekday windows).
"""

from __future__ import annotations

from ._process_group import CommandFailed
from .cron import (
    CronJob,
    after_clock,
    after_weekday,
    before_clock,
    before_weekday,
    between_clock,
    between_weekday,
    daily,
    every,
    hourly,
    weekly,
)
from .sentinel import SentinelJob
from .subprocess import SubprocessJob
from .webapp import ServerNotReady, WebappJob

__all__ = [
    "CommandFailed", "CronJob", "SentinelJob", "ServerNotReady", "SubprocessJob", "WebappJob",
    "after_clock", "after_weekday", "before_clock", "before_weekday", "between_clock", "between_weekday",
    "daily", "every", "hourly", "weekly",
]
