"""Running: the controller that owns an active run loop, the test jobs, and the in-process lane.

:mod:`~pytest_executor.run.controller` submits one engine job per item
(:mod:`~pytest_executor.run.jobs`, the ``job`` of the ``pytest_executor_job_*``
hooks) and replays what happened through pytest's hooks;
:mod:`~pytest_executor.run.local` runs an item in the pytest process itself.
"""
