"""Planning: the dependency graph of the collected tests, the ready queue, and the run plan.

Pure logic (no I/O) in :mod:`~pytest_executor.plan.dag` and
:mod:`~pytest_executor.plan.scheduler`; :mod:`~pytest_executor.plan._planner`
turns collected items and their markers into a validated plan.
"""
