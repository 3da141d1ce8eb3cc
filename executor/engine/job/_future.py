"""``JobFuture``: a placeholder for a job's result, and upstream's future methods on it."""

from __future__ import annotations

import typing as T

from ._upstream_api import append_callback, callback_list
from .utils import InvalidStateError

if T.TYPE_CHECKING:  # pragma: no cover
    from .base import Job

__all__ = ["JobFuture"]


def _check_callable(obj: object, name: str, optional: bool = True) -> None:
    if obj is None and optional:
        return
    if not callable(obj):
        raise TypeError(f"{name} must be callable, got {type(obj).__name__}: {obj!r}")



class JobFuture:
    """A placeholder for a job's result; pass it as an argument to another job.

    The receiving job waits for the upstream job to be ``done`` and gets its
    result in place of the future; it is cancelled if the upstream job fails
    or is cancelled.
    """

    __slots__ = ("job_id", "_job", "_result", "_exception", "_done_callbacks", "_error_callbacks")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._job: T.Optional["Job"] = None
        self._result: T.Any = None
        self._exception: T.Optional[BaseException] = None
        self._done_callbacks: list = []
        self._error_callbacks: list = []

    def __repr__(self) -> str:
        return f"<JobFuture of job {self.job_id}>"

    def result(self) -> T.Any:
        """The job's result once it is done (None before), as upstream's future: it never raises."""
        job = self._job
        if job is not None and job.status in ("done", "running"):
            try:
                return job.result()
            except InvalidStateError:
                return None
        return self._result if job is None else None

    def set_result(self, result: T.Any) -> None:
        """Set the result held for the job."""
        if self._job is not None:
            self._job._result = result
        self._result = result

    def exception(self) -> T.Optional[BaseException]:
        """The exception of the failed job (None if it did not fail)."""
        job = self._job
        return job._exception if job is not None else self._exception

    def set_exception(self, exception: BaseException) -> None:
        """Set the exception held for the job."""
        if self._job is not None:
            self._job._exception = exception
        self._exception = exception

    @property
    def done_callbacks(self) -> list:
        """Callbacks run with the result when the job is done."""
        return callback_list(self._job.callback) if self._job is not None else self._done_callbacks

    @property
    def error_callbacks(self) -> list:
        """Callbacks run with the exception when the job failed."""
        return callback_list(self._job.error_callback) if self._job is not None else self._error_callbacks

    def add_done_callback(self, callback: T.Callable[[T.Any], T.Any]) -> None:
        """Also call ``callback(result)`` when the job is done (coroutine functions are awaited)."""
        _check_callable(callback, "callback", optional=False)
        if self._job is None:
            self._done_callbacks.append(callback)
        else:
            self._job.callback = append_callback(self._job.callback, callback)

    def add_error_callback(self, callback: T.Callable[[BaseException], T.Any]) -> None:
        """Also call ``callback(exception)`` when the job failed."""
        _check_callable(callback, "callback", optional=False)
        if self._job is None:
            self._error_callbacks.append(callback)
        else:
            self._job.error_callback = append_callback(self._job.error_callback, callback)
