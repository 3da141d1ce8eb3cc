"""How an attempt of a job class may run without a Task of its own (the engine's fast path).

The engine asks each job class once which route its plain calls may take:

* ``INLINE``: a plain sync call on the loop thread, in batches (LocalJob);
* ``ON_THREAD``: straight to the thread backend, finished in bulk (ThreadJob);
* ``OWN_THREAD_CALL``: like ``ON_THREAD`` whatever the job's options and
  function, because the class's ``thread_call`` hook describes the whole attempt
  (SubprocessJob);
* ``ON_CALLER``: a plain sync call run by the thread that drives an engine
  started with ``start(loop_thread=False)``, between loop iterations (CallerJob;
  on an engine with a loop thread such jobs get a Task, see ``executor.engine._driving``);
* 0: a Task runs ``job._execute``.

The base rule (``INLINE`` for classes keeping ``Job``'s hooks) lives in the
engine; job types with a route of their own register a classifier here
(:func:`register_route`), so that the engine does not know them by name.
"""

from __future__ import annotations

import typing as T

__all__ = ["INLINE", "ON_THREAD", "OWN_THREAD_CALL", "ON_CALLER", "ThreadCallJob", "defining_class", "register_route",
           "registered_route"]

INLINE, ON_THREAD, OWN_THREAD_CALL, ON_CALLER = 1, 2, 3, 4

_classifiers: list[tuple[type, T.Callable[[type], int]]] = []


class ThreadCallJob(T.Protocol):
    """A job whose fast-path attempt is a call on the thread backend (see ``ThreadJob``)."""

    def thread_call(self, func: T.Callable[..., T.Any], args: tuple,
                    kwargs: dict) -> tuple[T.Callable[..., T.Any], tuple, dict]: ...  # noqa: D102

    def cancel_thread_call(self) -> T.Optional[T.Coroutine[T.Any, T.Any, None]]: ...  # noqa: D102


def register_route(base: type, classify: T.Callable[[type], int]) -> None:
    """Let ``classify(cls)`` decide the route of ``base`` and its subclasses."""
    _classifiers.append((base, classify))


def registered_route(cls: type) -> T.Optional[int]:
    """The route a registered classifier gives ``cls``, or None when no registered base covers it."""
    for base, classify in _classifiers:
        if issubclass(cls, base):
            return classify(cls)
    return None


def defining_class(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose own namespace defines attribute ``name``."""
    return next(klass for klass in cls.__mro__ if name in vars(klass))
