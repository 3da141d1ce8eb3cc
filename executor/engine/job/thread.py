"""ThreadJob: runs its function on the engine's reused thread pool."""

from __future__ import annotations

import asyncio
import typing as T

from ._routes import ON_THREAD, OWN_THREAD_CALL, defining_class, register_route
from .base import GeneratorDriver, Job
from .utils import GeneratorStepper

if T.TYPE_CHECKING:  # pragma: no cover
    from ..backend.thread import ThreadBackend


class ThreadGeneratorDriver(GeneratorDriver):
    """Steps a generator inside the thread pool (it was created there too)."""

    def __init__(self, gen: T.Any, backend: "ThreadBackend") -> None:
        self.gen = gen
        self.stepper = GeneratorStepper(gen)
        self.backend = backend

    def step(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Run one step in a pool thread and wait for it."""
        return self.backend.submit(self.stepper.step, op, value).result()

    async def astep(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Run one step in a pool thread without blocking the caller's loop."""
        return await asyncio.wrap_future(self.backend.submit(self.stepper.step, op, value))


class ThreadJob(Job):
    """A job run on a pool thread; limited by ``EngineSetting.max_thread_jobs``.

    Python threads cannot be killed or interrupted: cancelling a running
    ThreadJob (directly, or by ``engine.stop()`` / leaving ``with Engine()``)
    marks it cancelled at once and *abandons* its thread.  Neither ``cancel``
    nor ``stop`` waits for it; the thread (a daemon) leaves the pool, runs the
    function to its end, drops the result and exits.  A function that must
    stop early has to check a flag or event of its own.

    A class keeping this ``run_function`` (and the base ``_execute``/``call_options``)
    takes the engine's fast path for plain calls: no Task per attempt, the
    call goes straight to the thread backend and its result is finished in
    bulk with the other results of the same loop wake-up.

    A subclass that runs something else on the thread (a command, ...) joins
    the fast path by overriding :meth:`thread_call` (and
    :meth:`cancel_thread_call` if a cancelled call must be stopped) in the
    same class as, or below, its ``run_function``/``call_options`` overrides:
    ``thread_call`` then describes the whole attempt, options included.
    """

    resource_kind = "thread"

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Run the call on the engine's thread pool."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        assert self.engine is not None
        return await self.engine.thread_backend.run(func, args, kwargs)

    def thread_call(self, func: T.Callable[..., T.Any], args: tuple,
                    kwargs: dict) -> tuple[T.Callable[..., T.Any], tuple, dict]:
        """Hook (fast path, on the loop): the call a pool thread runs for this attempt.

        Gets the job's resolved call (futures replaced, engine injected);
        default: that call unchanged.  Keep it cheap: anything slow (disk,
        path resolution) belongs in the returned function, which runs on the thread.
        """
        return func, args, kwargs

    def cancel_thread_call(self) -> T.Optional[T.Coroutine[T.Any, T.Any, None]]:
        """Hook (fast path, on the loop): the engine cancelled the running attempt.

        The thread cannot be interrupted; return a coroutine that stops the
        work (awaited by ``cancel``/``stop``), or None (default: the call
        finishes and its result is dropped).
        """
        return None

    async def start_generator(
        self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict
    ) -> GeneratorDriver:
        """Create the generator in a pool thread; steps run there too."""
        assert self.engine is not None
        backend = self.engine.thread_backend
        gen = await asyncio.wrap_future(backend.submit(lambda: func(*args, **kwargs)))
        return ThreadGeneratorDriver(gen, backend)


def _thread_route(cls: type) -> int:
    """The fast-path route of a ThreadJob class (see :mod:`executor.engine.job._routes`)."""
    if cls.thread_call is not ThreadJob.thread_call:  # type: ignore[attr-defined]
        # its thread_call covers the attempt, unless run_function/call_options were overridden below it
        hook = defining_class(cls, "thread_call")
        if all(issubclass(hook, defining_class(cls, name)) for name in ("run_function", "call_options")):
            return OWN_THREAD_CALL
        return 0
    if cls.call_options is not Job.call_options:  # type: ignore[attr-defined]
        return 0
    return ON_THREAD if cls.run_function is ThreadJob.run_function else 0  # type: ignore[attr-defined]


register_route(ThreadJob, _thread_route)
