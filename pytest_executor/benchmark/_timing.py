"""Calibration and the measuring loop: how many rounds, how many calls per round.

A *round* calls the function ``iterations`` times in a row and is timed once with
:func:`time.perf_counter_ns`; statistics are taken over rounds.  Calibration
raises ``iterations`` until one round lasts at least ``min_time`` (so the clock's
resolution and the loop's own cost vanish in the noise), then picks enough
rounds to fill ``max_time``, never fewer than ``min_rounds``.

The functions take a ``run_round(iterations) -> nanoseconds`` callable, so the
same logic drives sync and async functions and can be tested with a fake.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, final

from pytest_executor.config._parse import parse_int_at_least, parse_positive_int, parse_seconds

RunRound = Callable[[int], int]
"""Run one round of N calls, return its duration in nanoseconds."""

MAX_ITERATIONS = 10_000_000
"""Cap on calls per round, so a no-op function cannot calibrate forever."""


@final
@dataclass(frozen=True)
class TimingSettings:
    """How a benchmark is measured (options, ini values and marker overrides)."""

    min_rounds: int = 5
    """Never fewer rounds than this (automatic mode)."""
    min_time: float = 20e-6
    """Seconds one round must last at least; calibration raises iterations to reach it."""
    max_time: float = 1.0
    """Seconds the measured rounds should fill together (``min_rounds`` wins if longer)."""
    warmup_rounds: int = 0
    """Untimed rounds run before measuring (on top of the calibration runs)."""
    disable_gc: bool = False
    """Switch the garbage collector off while rounds run."""

    def __post_init__(self) -> None:
        """Reject values that cannot describe a measurement."""
        if self.min_rounds < 1:
            raise ValueError(f"min_rounds must be >= 1, got {self.min_rounds}")
        if not self.min_time >= 0:
            raise ValueError(f"min_time must be >= 0 seconds, got {self.min_time}")
        if not self.max_time >= 0:
            raise ValueError(f"max_time must be >= 0 seconds, got {self.max_time}")
        if self.warmup_rounds < 0:
            raise ValueError(f"warmup_rounds must be >= 0, got {self.warmup_rounds}")

    def updated(self, **changes: Any) -> TimingSettings:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def clock_resolution_ns(clock: Callable[[], int] = time.perf_counter_ns, samples: int = 200) -> int:
    """Smallest non-zero step the clock shows (at least 1 ns)."""
    best = math.inf
    for _ in range(samples):
        first = clock()
        second = clock()
        while second == first:
            second = clock()
        best = min(best, second - first)
    return max(1, int(best))


def calibrate_iterations(run_round: RunRound, min_time_ns: int, resolution_ns: int) -> tuple[int, int]:
    """Find iterations per round so a round lasts >= ``min_time_ns``.

    Returns ``(iterations, duration_ns_of_the_last_calibration_round)``.  Each
    step predicts the iterations needed from the last duration, with headroom,
    and at least doubles them, so a handful of rounds suffice.
    """
    __tracebackhide__ = True  # a failing benchmarked function shows its own frames, not ours
    target = max(min_time_ns, resolution_ns * 10)
    iterations = 1
    while True:
        duration = run_round(iterations)
        if duration >= target or iterations >= MAX_ITERATIONS:
            return iterations, duration
        predicted = math.ceil(iterations * target * 1.25 / max(duration, resolution_ns))
        iterations = min(MAX_ITERATIONS, max(iterations * 2, predicted))


def plan_rounds(round_ns: int, settings: TimingSettings) -> int:
    """Rounds needed to fill ``max_time`` with rounds of ``round_ns``, at least ``min_rounds``."""
    fill = math.ceil(settings.max_time * 1e9 / max(round_ns, 1))
    return max(settings.min_rounds, fill)


@contextmanager
def gc_paused(disable: bool) -> Iterator[None]:
    """Disable the garbage collector for the block when asked, restoring its state."""
    __tracebackhide__ = True
    was_enabled = gc.isenabled()
    if disable and was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if disable and was_enabled:
            gc.enable()


def measure_rounds(
    run_round: RunRound,
    rounds: int,
    iterations: int,
    *,
    warmup_rounds: int = 0,
    disable_gc: bool = False,
    before_round: Callable[[], None] | None = None,
    after_round: Callable[[], None] | None = None,
) -> list[int]:
    """Run warmup rounds, then ``rounds`` timed rounds; return their durations (ns).

    ``before_round``/``after_round`` run outside the timed region (pedantic
    ``setup``/``teardown``); warmup rounds call them too.
    """
    __tracebackhide__ = True
    for _ in range(warmup_rounds):
        _one_round(run_round, iterations, before_round, after_round)
    durations: list[int] = []
    with gc_paused(disable_gc):
        for _ in range(rounds):
            durations.append(_one_round(run_round, iterations, before_round, after_round))
    return durations


def _one_round(
    run_round: RunRound,
    iterations: int,
    before_round: Callable[[], None] | None,
    after_round: Callable[[], None] | None,
) -> int:
    __tracebackhide__ = True
    if before_round is not None:
        before_round()
    duration = run_round(iterations)
    if after_round is not None:
        after_round()
    return duration


def parse_rounds(raw: str) -> int:
    """Parse a number of rounds >= 0 (warmup rounds)."""
    return parse_int_at_least(raw, 0)


def parse_min_rounds(raw: str) -> int:
    """Parse a number of rounds >= 1."""
    return parse_positive_int(raw)


parse_duration = parse_seconds
"""Parse a positive number of seconds."""
