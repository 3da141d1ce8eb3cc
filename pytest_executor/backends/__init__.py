"""Backends: where items run when not in the pytest process itself.

The contract between the controller and a backend is
:mod:`~pytest_executor.backends._runner`; the messages of worker sessions are
:mod:`~pytest_executor.backends._protocol`'s (the xdist link's sockets open
with the hello of :mod:`~pytest_executor.backends._hello`); the worker side is
:mod:`~pytest_executor.backends.worker`, hosted as a worker state of the
engine's process pool by :mod:`~pytest_executor.backends._hosted`.  One module
per backend: :mod:`~pytest_executor.backends.process` (sessions on the
engine's process pool; the ``forked`` backend is the same pool forking a child
per item, :mod:`~pytest_executor.backends.forked`),
:mod:`~pytest_executor.backends.subproc` (one-shot sessions on the same pool)
and :mod:`~pytest_executor.backends.dask` (with its ``_dask_*`` helpers: each
session on a one-worker engine pool of a host task on a dask worker,
:mod:`~pytest_executor.backends._dask_host`, relayed through dask's comms),
made by name in :mod:`~pytest_executor.backends._factory`.
"""
