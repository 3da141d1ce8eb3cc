"""The ``job`` marker: its documentation, and reading it into a :class:`JobSpec`.

``@pytest.mark.job(backend=None, after=(), condition=None, retries=0,
timeout=None, exclusive=False)`` may decorate a function, a class or a module
(``pytestmark``), or a ``pytest.param``.  For each keyword the closest marker
that sets it wins; the ``after`` lists of all markers merge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, final

import pytest

from pytest_executor.config._parse import MAX_TIMEOUT, valid_seconds
from pytest_executor.config.options import BACKENDS

MARKER: Final = "job"

MARKER_DOC: Final = (
    "job(backend=None, after=(), condition=None, retries=0, timeout=None, exclusive=False): "
    "run the test as an engine job. backend: one of " + ", ".join(BACKENDS) + "; "
    "after: names of tests (bare name, Class::name, node id, parametrised id) that must "
    "finish first - the test is skipped if one fails or is skipped; condition: an "
    "executor.engine Condition that must hold before it starts; retries: reruns of a "
    "failed test; timeout: seconds before it fails; exclusive: run it alone. "
    "See the pytest-executor README."
)

KEYWORDS: Final = ("backend", "after", "condition", "retries", "timeout", "exclusive")


class MarkerError(ValueError):
    """``job`` marker arguments are invalid; each of :attr:`problems` names its argument."""

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@final
@dataclass(frozen=True)
class JobSpec:
    """The merged ``job`` marker arguments of one test."""

    backend: str | None = None
    after: tuple[str, ...] = ()
    condition: Any = None
    retries: int = 0
    timeout: float | None = None
    exclusive: bool = False
    marked: bool = False
    """True if the test carries at least one ``job`` marker."""


SPEC_KEY: Final = pytest.StashKey[JobSpec]()
"""``item.stash[SPEC_KEY]``: the item's merged marker, once the run is planned."""


def job_spec(item: pytest.Item) -> JobSpec:
    """Merge the ``job`` markers of ``item``; raise :class:`MarkerError` on bad input."""
    chosen: dict[str, Any] = {}
    after: list[str] = []
    problems: list[str] = []
    marked = False
    for mark in item.iter_markers(MARKER):  # closest first
        marked = True
        if mark.args:
            problems.append(f"job() takes keyword arguments only, got positional {mark.args!r}")
        for key, value in mark.kwargs.items():
            if key not in KEYWORDS:
                problems.append(f"job() got an unknown keyword {key!r}; valid keywords: {', '.join(KEYWORDS)}")
            elif key == "after":
                try:
                    after.extend(_names(value))
                except MarkerError as error:
                    problems.extend(error.problems)
            else:
                chosen.setdefault(key, value)
    if not marked:
        return JobSpec()
    checks: dict[str, tuple[Callable[[Any], Any], Any]] = {
        "backend": (_backend, None), "condition": (_condition, None), "retries": (_retries, 0),
        "timeout": (_timeout, None), "exclusive": (_exclusive, False),
    }
    values: dict[str, Any] = {}
    for key, (check, default) in checks.items():  # every bad argument at once, not the first
        try:
            values[key] = check(chosen.get(key, default))
        except MarkerError as error:
            problems.extend(error.problems)
    if problems:
        raise MarkerError(*problems)
    return JobSpec(after=tuple(dict.fromkeys(after)), marked=True, **values)


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        names = list(value)
        bad = [name for name in names if not isinstance(name, str)]
        if not bad:
            return names
    raise MarkerError(
        f"job(after=...) must be a test name or a list of test names, got {value!r}"
    )


def _backend(value: object) -> str | None:
    if value is None or value in BACKENDS:
        return value
    raise MarkerError(f"job(backend={value!r}) is not a backend; valid: {', '.join(BACKENDS)}")


def _condition(value: object) -> object:
    if value is None:
        return None
    try:
        from executor.engine.job.condition import Condition
    except ImportError:  # the engine is not importable: nothing could evaluate it
        raise MarkerError(
            f"job(condition={value!r}) needs executor.engine, which failed to import"
        ) from None
    if not isinstance(value, Condition):
        raise MarkerError(
            f"job(condition={value!r}) is not an executor.engine.job.condition.Condition"
        )
    return value


def _retries(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise MarkerError(f"job(retries={value!r}) must be an integer >= 0")


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    seconds = valid_seconds(value)
    if seconds is not None:
        return seconds
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    raise MarkerError(
        f"job(timeout={shown}) must be a positive, finite number of seconds up to {MAX_TIMEOUT:.0f} (a year), or None"
    )


def _exclusive(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise MarkerError(f"job(exclusive={value!r}) must be True or False")
