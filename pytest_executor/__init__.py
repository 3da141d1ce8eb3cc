"""pytest-executor: run a pytest suite as a graph of engine jobs.

The pytest plugin lives in :mod:`pytest_executor.plugin` (entry point
``executor``); the job records in :mod:`pytest_executor.views.report`; the pure
dependency graph and ready-queue in :mod:`pytest_executor.plan.dag` and
:mod:`pytest_executor.plan.scheduler`.

PYTEST_DONT_REWRITE: pytest marks this package for assertion rewriting, as
part of the plugin's distribution; a worker session has imported it before
pytest starts (a dask session, to unpickle its state), and this marker spares
it pytest's "already imported, cannot be rewritten" warning, which a suite's
``filterwarnings = error`` turns into a failed start.  Its submodules are
rewritten as usual.
"""

__version__ = "0.1.0"

WORKER_ENV = "PYTEST_EXECUTOR_WORKER"
"""Set in worker sessions: the plugin registers its marker, options and fixtures
there but never takes over the run loop."""
