"""Benchmarks as jobs: the ``job_benchmark`` fixture, its statistics and baselines.

Public objects: :class:`JobBenchmark` (the fixture's type, for annotations) and
:class:`BenchmarkStats` (its ``stats`` after a measurement).  The pytest hooks
live in :mod:`pytest_executor.benchmark._plugin`.
"""

from __future__ import annotations

from ._fixture import JobBenchmark
from ._stats import BenchmarkStats
from ._timing import TimingSettings

__all__ = ["BenchmarkStats", "JobBenchmark", "TimingSettings"]
