"""Factory of the parallel backends the controller can run items on.

The controller imports this module lazily (only when a parallel backend is
used) and calls :func:`make_runner`; the runners implement
:class:`pytest_executor._runner.Runner`.
"""

from __future__ import annotations

import pytest

from pytest_executor._runner import Runner

BACKENDS = ("process", "subprocess", "dask")
"""The backends :func:`make_runner` knows."""


def make_runner(backend: str, config: pytest.Config) -> Runner:
    """Create (not start) the runner of ``backend`` configured from ``config``'s options."""
    if backend == "process":
        from pytest_executor.process import ProcessRunner, read_workers_option

        return ProcessRunner(config, read_workers_option(config))
    if backend == "subprocess":
        from pytest_executor.process import read_workers_option
        from pytest_executor.subproc import SubprocessRunner

        return SubprocessRunner(config, read_workers_option(config))
    if backend == "dask":
        from pytest_executor.dask_runner import DaskRunner

        return DaskRunner(config)
    raise ValueError(f"unknown executor backend {backend!r}; expected one of {', '.join(BACKENDS)}")
