"""Running: the controller that owns an active run loop, the test jobs, and the in-process lane.

:mod:`~pytest_executor.run.controller` submits one engine job per item
(:mod:`~pytest_executor.run.jobs`, the ``job`` of the ``pytest_executor_job_*``
hooks) and replays what happened through pytest's hooks;
:mod:`~pytest_executor.run.local` runs an item in the pytest process itself.

Why a test's ``timeout`` is not the engine job's ``timeout`` (issue 13 asked
for it where reports could stay byte-identical; they cannot):

* an engine job's clock starts when the job starts running.  A
  :class:`~pytest_executor.run.jobs.RemoteTestJob` runs from the moment it is
  handed to a runner, while the item may still wait behind another in a
  worker's queue, or for its one-shot process to start and collect
  (``subprocess``).  The test's timeout counts from the item's own start, so
  the runner starts the clock then (``on_start`` of
  :meth:`executor.engine.backend.process.ProcessPool.run`), and the stop is the
  engine pool's: ``timed_out=`` makes the pool stop the worker with SIGABRT
  (a stack dump) and raise :class:`~executor.engine.job.utils.WorkerTimeoutError`
  with its output, which the runner turns into the "Timeout: ..." report;
* an engine timeout cancels the job: that yields a ``JobTimeoutError`` and no
  report, where pytest must see the test's own failed call report (captured
  output, the thread's or worker's stack) and the teardown still run.  A
  ``local``/``thread`` test's call phase runs on a helper thread joined with
  the timeout (:mod:`~pytest_executor.run.local`), whose failure is an
  ordinary pytest report; the engine cannot stop pytest's protocol on the
  main thread that drives it.

A timed-out attempt is a failed attempt either way, so ``retries`` (the
engine's) apply to it.
"""
