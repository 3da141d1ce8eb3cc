"""The results of generator jobs: proxies that step the generator wherever the job runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import typing as T

from .utils import GeneratorStepper, InvalidStateError

if T.TYPE_CHECKING:  # pragma: no cover
    from .base import Job

__all__ = ["GeneratorDriver", "GeneratorProxy", "AsyncGeneratorProxy"]


class GeneratorDriver:
    """Steps a job's generator wherever it lives (see :class:`GeneratorStepper`).

    Subclasses route the steps to a thread or a worker process; this default
    steps the generator in the calling thread (LocalJob).
    """

    def __init__(self, gen: T.Any) -> None:
        self.gen = gen
        self.stepper = GeneratorStepper(gen)

    def step(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Advance synchronously; returns ``("yield", v)`` or ``("return", v)``."""
        return self.stepper.step(op, value)

    async def astep(self, op: str, value: T.Any = None) -> tuple[str, T.Any]:
        """Advance from a coroutine (async generators run on the caller's loop)."""
        if not self.stepper.is_async:
            return self.stepper.step(op, value)
        try:
            if op == "close":
                await self.gen.aclose()
                return ("return", None)
            return ("yield", await (self.gen.asend(value) if op == "send" else self.gen.__anext__()))
        except StopAsyncIteration:
            return ("return", None)

    def abandon(self) -> None:
        """The job was cancelled: release whatever holds the generator."""


class _ProxyBase:
    """Shared machinery of the two generator proxies."""

    def __init__(self, job: "Job") -> None:
        self._job = job
        self._driver: concurrent.futures.Future[GeneratorDriver] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._ended = False

    def _end(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        engine = self._job.engine
        if engine is not None:
            engine._generator_ended(self._job, exc)

    def _check_open(self) -> None:
        if self._ended:
            raise StopIteration if isinstance(self, GeneratorProxy) else StopAsyncIteration
        if self._job.status == "cancelled":
            raise InvalidStateError(f"job {self._job.id} was cancelled; its generator is gone")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of job {self._job.id}>"


class GeneratorProxy(_ProxyBase):
    """The result of a job made from a generator function.

    Iterate it (or ``send`` to it) from any thread; the job stays ``running``
    until the generator is exhausted, then it becomes ``done`` (or ``failed``
    if the generator raised).
    """

    def __iter__(self) -> "GeneratorProxy":
        return self

    def __next__(self) -> T.Any:
        return self._advance("next", None)

    def send(self, value: T.Any) -> T.Any:
        """Send ``value`` into the generator and return the next yielded value."""
        return self._advance("send", value)

    def close(self) -> None:
        """Close the generator early; the job becomes ``done``."""
        if not self._ended:
            with self._lock:
                self._driver.result().step("close")
            self._end(None)

    def _advance(self, op: str, value: T.Any) -> T.Any:
        self._check_open()
        with self._lock:
            driver = self._driver.result()
            try:
                kind, out = driver.step(op, value)
            except BaseException as exc:
                self._end(exc)
                raise
        if kind == "return":
            self._end(None)
            raise StopIteration(out)
        return out


class AsyncGeneratorProxy(_ProxyBase):
    """The result of a job made from an async generator function (``async for``, ``asend``)."""

    def __aiter__(self) -> "AsyncGeneratorProxy":
        return self

    async def __anext__(self) -> T.Any:
        return await self._advance("next", None)

    async def asend(self, value: T.Any) -> T.Any:
        """Send ``value`` into the generator and return the next yielded value."""
        return await self._advance("send", value)

    async def aclose(self) -> None:
        """Close the generator early; the job becomes ``done``."""
        if not self._ended:
            driver = await asyncio.wrap_future(self._driver)
            await driver.astep("close")
            self._end(None)

    async def _advance(self, op: str, value: T.Any) -> T.Any:
        if self._ended:
            raise StopAsyncIteration
        self._check_open()
        driver = await asyncio.wrap_future(self._driver)
        try:
            kind, out = await driver.astep(op, value)
        except BaseException as exc:
            self._end(exc)
            raise
        if kind == "return":
            self._end(None)
            raise StopAsyncIteration
        return out
