"""Backends: where items run when not in the pytest process itself.

The contract between the controller and a backend is
:mod:`~pytest_executor.backends._runner`; the wire protocol to worker sessions
is :mod:`~pytest_executor.backends._protocol` (the xdist link's sockets open
with the hello of :mod:`~pytest_executor.backends._hello`); the worker side is
:mod:`~pytest_executor.backends.worker`.  One module per backend:
:mod:`~pytest_executor.backends.process` (pytest sessions hosted on the
engine's process pool, :mod:`~pytest_executor.backends._hosted`; the ``forked``
backend is the same pool forking a child per item, :mod:`~pytest_executor.backends.forked`),
:mod:`~pytest_executor.backends.subproc` (one-shot sessions on the same pool) and
:mod:`~pytest_executor.backends.dask` (with its ``_dask_*`` helpers; remote worker
sessions driven by :mod:`~pytest_executor.backends._pipe_pool`), made by name in
:mod:`~pytest_executor.backends._factory`.
"""
