"""The local backend: calls run directly on the engine's event loop thread."""

from __future__ import annotations

import inspect
import typing as T


async def run_local(func: T.Callable[..., T.Any], args: tuple, kwargs: dict) -> T.Any:
    """Call ``func`` on the loop; await it if it returns an awaitable."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
