"""Running: the controller that owns an active run loop, and the in-process lane.

:mod:`~pytest_executor.run.controller` hands items to their backends in
dependency order and replays what happened through pytest's hooks;
:mod:`~pytest_executor.run.local` runs an item in the pytest process itself.
"""
