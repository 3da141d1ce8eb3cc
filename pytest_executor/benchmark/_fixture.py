"""The object behind the ``job_benchmark`` fixture: it measures one callable per test.

``job_benchmark(func, *args, **kwargs)`` calibrates and measures ``func`` and
returns what it returned; ``job_benchmark.pedantic(...)`` takes rounds and
iterations as given.  ``async def`` functions (or callables returning an
awaitable) are awaited on one private event loop; only the awaited calls are
timed.  :meth:`JobBenchmark.to_record` gives the result as plain data, which the plugin
puts in the test's ``user_properties`` so it travels back from workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

from ._stats import BenchmarkStats, compute_stats
from ._timing import (
    RunRound,
    TimingSettings,
    calibrate_iterations,
    clock_resolution_ns,
    measure_rounds,
    plan_rounds,
)

Clock = Callable[[], int]


class _ReturnedAwaitable(Exception):
    """A function thought sync returned an awaitable: measure it as async instead."""


@final
class _Calls:
    """Calls the benchmarked function with the current arguments, timing whole rounds."""

    def __init__(self, func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], clock: Clock) -> None:
        self.func = func
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.clock = clock
        self.result: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def set_arguments(self, prepared: object) -> None:
        """Use what a pedantic ``setup`` returned: ``None``, ``(args, kwargs)``."""
        if prepared is None:
            return
        if (
            isinstance(prepared, tuple)
            and len(prepared) == 2
            and isinstance(prepared[0], (tuple, list))
            and isinstance(prepared[1], Mapping)
        ):
            self.args = tuple(prepared[0])
            self.kwargs = dict(prepared[1])
            return
        raise TypeError(f"setup must return None or an (args, kwargs) tuple, got {type(prepared).__name__}")

    def sync_round(self, iterations: int) -> int:
        """One timed round of plain calls."""
        __tracebackhide__ = True  # a failing benchmarked function shows its own frames, not ours
        func, args, kwargs = self.func, self.args, self.kwargs
        result = None
        start = self.clock()
        for _ in range(iterations):
            result = func(*args, **kwargs)
        elapsed = self.clock() - start
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited on purpose: avoid the RuntimeWarning
            raise _ReturnedAwaitable
        self.result = result
        return elapsed

    def async_round(self, iterations: int) -> int:
        """One round on the private loop; the clock runs inside the loop around the awaits."""
        __tracebackhide__ = True
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._timed_awaits(iterations))

    async def _timed_awaits(self, iterations: int) -> int:
        __tracebackhide__ = True
        func, args, kwargs = self.func, self.args, self.kwargs
        result = None
        start = self.clock()
        for _ in range(iterations):
            result = await func(*args, **kwargs)
        elapsed = self.clock() - start
        self.result = result
        return elapsed

    def close(self) -> None:
        """Close the private event loop, if one was opened."""
        if self._loop is not None:
            loop, self._loop = self._loop, None
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())  # no thread left behind
            finally:
                loop.close()


def is_async_callable(func: Callable[..., Any]) -> bool:
    """``async def`` functions, partials of them, and objects with an async ``__call__``."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the bound __call__ itself
    return call is not None and inspect.iscoroutinefunction(call)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@final
class JobBenchmark:
    """Measure one callable in a test; see the module docstring and the README.

    Attributes after a measurement: :attr:`stats` (a :class:`BenchmarkStats`),
    :attr:`extra_info` (a dict you may fill; saved with the results).
    """

    def __init__(
        self,
        nodeid: str,
        settings: TimingSettings,
        *,
        group: str | None = None,
        clock: Clock = time.perf_counter_ns,
    ) -> None:
        self.nodeid = nodeid
        self.settings = settings
        self.group = group
        self.extra_info: dict[str, Any] = {}
        self.stats: BenchmarkStats | None = None
        self._clock = clock
        self._mode = ""
        self._is_async = False

    def __repr__(self) -> str:
        return f"<JobBenchmark {self.nodeid} {'measured' if self.stats else 'not run'}>"

    def __call__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Calibrate, measure ``func(*args, **kwargs)`` and return its (last) result."""
        __tracebackhide__ = True
        self._check_usable(func)
        return self._off_running_loop(self._measure_auto, func, args, kwargs)

    def pedantic(
        self,
        func: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        setup: Callable[[], object] | None = None,
        teardown: Callable[..., object] | None = None,
        rounds: int = 1,
        iterations: int = 1,
        warmup_rounds: int = 0,
    ) -> Any:
        """Measure exactly ``rounds`` rounds of ``iterations`` calls, no calibration.

        ``setup()`` runs untimed before each round and may return ``(args,
        kwargs)`` for it; ``teardown(*args, **kwargs)`` runs untimed after each
        round.  ``setup`` needs ``iterations=1`` (it prepares exactly one call).
        """
        __tracebackhide__ = True
        self._check_usable(func)
        self._check_count("rounds", rounds, 1)
        self._check_count("iterations", iterations, 1)
        self._check_count("warmup_rounds", warmup_rounds, 0)
        for label, hook in (("setup", setup), ("teardown", teardown)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{self.nodeid}: job_benchmark.pedantic {label}= must be callable, got {hook!r}")
        if setup is not None and iterations != 1:
            raise ValueError(
                f"{self.nodeid}: job_benchmark.pedantic setup= prepares one call per round, "
                f"so iterations must be 1 (got {iterations})"
            )
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"{self.nodeid}: job_benchmark.pedantic kwargs= must be a mapping, got {kwargs!r}")
        plan = (rounds, iterations, warmup_rounds, setup, teardown)
        return self._off_running_loop(self._measure_pedantic, func, tuple(args), dict(kwargs or {}), plan)

    # -- checks -------------------------------------------------------------

    def _check_usable(self, func: object) -> None:
        if self.stats is not None:
            raise RuntimeError(
                f"{self.nodeid}: job_benchmark can measure only one function per test; "
                "split the benchmarks into separate tests (parametrize them)"
            )
        if not callable(func):
            raise TypeError(f"{self.nodeid}: job_benchmark needs a callable, got {type(func).__name__} {func!r}")

    def _check_count(self, name: str, value: object, lowest: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"{self.nodeid}: job_benchmark.pedantic {name}= must be an integer >= {lowest}, got {value!r}")

    # -- measuring ----------------------------------------------------------

    def _off_running_loop(self, measure: Callable[..., Any], *arguments: Any) -> Any:
        """Measure here, or on a helper thread when this thread already runs an event loop.

        An ``async def`` test has a running loop; ``run_until_complete`` cannot
        nest, so the benchmark gets its own thread (and loop) while the test waits.
        """
        __tracebackhide__ = True
        if not _in_running_loop():
            return measure(*arguments)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="job_benchmark") as pool:
            return pool.submit(measure, *arguments).result()

    def _measure_auto(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        calls = _Calls(func, args, kwargs, self._clock)
        is_async = is_async_callable(func)
        try:
            try:
                durations, iterations = self._calibrated_rounds(calls.async_round if is_async else calls.sync_round)
            except _ReturnedAwaitable:
                is_async = True
                durations, iterations = self._calibrated_rounds(calls.async_round)
        finally:
            calls.close()
        self._finish(durations, iterations, mode="auto", is_async=is_async)
        return calls.result

    def _calibrated_rounds(self, run_round: RunRound) -> tuple[list[int], int]:
        __tracebackhide__ = True
        settings = self.settings
        resolution = clock_resolution_ns(self._clock)
        iterations, round_ns = calibrate_iterations(run_round, int(settings.min_time * 1e9), resolution)
        rounds = plan_rounds(round_ns, settings)
        durations = measure_rounds(
            run_round,
            rounds,
            iterations,
            warmup_rounds=settings.warmup_rounds,
            disable_gc=settings.disable_gc,
        )
        return durations, iterations

    def _measure_pedantic(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        plan: tuple[int, int, int, Callable[[], object] | None, Callable[..., object] | None],
    ) -> Any:
        __tracebackhide__ = True
        rounds, iterations, warmup_rounds, setup, teardown = plan
        calls = _Calls(func, args, kwargs, self._clock)
        is_async = is_async_callable(func)

        def before_round() -> None:
            __tracebackhide__ = True
            if setup is not None:
                calls.set_arguments(setup())

        def after_round() -> None:
            __tracebackhide__ = True
            if teardown is not None:
                teardown(*calls.args, **calls.kwargs)

        try:
            durations = measure_rounds(
                calls.async_round if is_async else calls.sync_round,
                rounds,
                iterations,
                warmup_rounds=warmup_rounds,
                disable_gc=self.settings.disable_gc,
                before_round=before_round,
                after_round=after_round,
            )
        except _ReturnedAwaitable:
            raise TypeError(
                f"{self.nodeid}: the function given to job_benchmark.pedantic returned an awaitable; "
                "pass the `async def` function itself so its calls are awaited"
            ) from None
        finally:
            calls.close()
        self._finish(durations, iterations, mode="pedantic", is_async=is_async)
        return calls.result

    def _finish(self, durations: list[int], iterations: int, *, mode: str, is_async: bool) -> None:
        self.stats = compute_stats(durations, iterations)
        self._mode = mode
        self._is_async = is_async

    def to_record(self) -> dict[str, Any] | None:
        """The measurement as plain data (``None`` before one was made).

        Built when the test's report is made, so :attr:`extra_info` filled after
        the measurement is included.
        """
        if self.stats is None:
            return None
        return {
            "name": self.nodeid,
            "group": self.group,
            "mode": self._mode,
            "async": self._is_async,
            "disable_gc": self.settings.disable_gc,
            "stats": self.stats.to_dict(),
            "extra_info": self.extra_info,
        }

