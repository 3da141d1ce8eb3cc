"""Extended job types: shell commands, web apps, sentinels and cron schedules.

``SubprocessJob`` runs a shell command, ``WebappJob`` a web server on a local
port, ``SentinelJob`` submits a job each time a condition becomes true and
``CronJob`` does so on a schedule built with the helpers below
(``every``, ``daily``, ``hourly``, ``weekly`` and the clock/weekday windows).
"""

from __future__ import annotations

from ._process_group import CommandFailed
from .subprocess import SubprocessJob
from .webapp import ServerNotReady, WebappJob

__all__ = ["CommandFailed", "ServerNotReady", "SubprocessJob", "WebappJob"]
