"""SubprocessJob: run a shell command as a job; its result is the return code."""

from __future__ import annotations

import os
import typing as T
from pathlib import Path

from ..base import Job
from ..condition import Condition
from ..process import ProcessJob
from ..thread import ThreadJob
from ..utils import CallOptions
from ._command import CommandSpec, run_command_blocking
from ._process_group import CommandFailed, check_popen_kwargs
from ._variants import STANDARD_BASES, CommandRunner, signature_of_init, variant

__all__ = ["CommandFailed", "SubprocessJob", "job_class_on"]

CURRENT_DIR = "$current_dir"
CACHE_DIR = "$cache_dir"
#: the file, in the job's cache dir, that ``record_cmd`` writes the command to
COMMAND_FILE = "command.sh"


class SubprocessJob(CommandRunner):
    """A job that runs ``cmd`` through the shell; ``result()`` is its return code (0).

    A non-zero exit makes the job ``failed`` with a :class:`CommandFailed`
    that names the code and quotes the end of the command's stderr.

    Args:
        cmd: the shell command line.
        record_cmd: write the command to ``command.sh`` in the job's cache dir
            as it starts (on by default, as in executor-engine 0.3.3; the
            cache dir is under ``EngineSetting.cache_path`` or a private
            temporary dir, never the working directory). ``record_cmd=False``
            saves that disk work, which on some disks costs as much as
            starting the command.
        base_class: where the command is supervised and which concurrency
            limit it counts against: :class:`ThreadJob` (default: a pool
            thread starts and watches it, ``max_thread_jobs``),
            :class:`LocalJob` (watched from the engine's event loop, costs no
            thread; the start itself runs on the loop) or :class:`ProcessJob`
            (a worker process, ``max_process_jobs``).
        target_dir: working directory of the command; ``$current_dir`` (the
            engine's working directory, default) and ``$cache_dir`` (the job's
            cache dir, created on demand) are replaced.
        popen_kwargs: extra ``subprocess.Popen`` arguments (``env``,
            ``stdin``, ``stdout``/``stderr`` overrides...); the shell, the
            session and the working directory are the job's. stdin is
            /dev/null unless given; ``subprocess.PIPE`` for stdin or stdout is
            refused (nothing would serve it), and so are open files when a
            ProcessJob starts the command in a worker process.
        redirect_out_err: False (default): the command writes to the engine
            process's stdout and stderr; True: to ``stdout.txt`` /
            ``stderr.txt`` in the job's cache dir; a path: both to that file.
        callback, error_callback, retries, retry_time_delta, name, condition,
        wait_time_delta: as for :class:`Job` (upstream's order of arguments).
        **job_kwargs: the other :class:`Job` arguments; unknown ones become ``job.attrs``.

    The command runs in its own process group: cancelling the job (or
    stopping the engine) stops the whole group, and processes the command
    leaves running when it exits are stopped too. If the process that
    started it dies first (SIGKILL, a crash), a small watchdog process
    stops the group (see ``_reaper``).
    """

    repr_attrs = [
        ("status", lambda self: self.status),
        ("id", lambda self: self.id),
        ("cmd", lambda self: self.cmd),
        ("target_dir", lambda self: self.target_dir),
        ("base_class", lambda self: getattr(self.base_class, "__name__", self.base_class)),
        ("condition", lambda self: self.condition),
        ("retry_remain", lambda self: self.retry_remain),
    ]

    def __new__(cls, *args: T.Any, **kwargs: T.Any) -> "SubprocessJob":
        if cls is SubprocessJob:
            cls = job_class_on(kwargs.get("base_class", args[2] if len(args) > 2 else ThreadJob))
        return T.cast("SubprocessJob", super().__new__(cls))

    def __init__(
        self,
        cmd: str,
        record_cmd: bool = True,
        base_class: type[Job] = ThreadJob,
        callback: T.Optional[T.Callable[[T.Any], T.Any]] = None,
        error_callback: T.Optional[T.Callable[[BaseException], T.Any]] = None,
        retries: int = 0,
        retry_time_delta: float = 0.0,
        name: T.Optional[str] = None,
        condition: T.Optional[Condition] = None,
        wait_time_delta: float = 0.01,
        redirect_out_err: bool | str | Path = False,
        target_dir: str | Path = CURRENT_DIR,
        popen_kwargs: dict[str, T.Any] | None = None,
        **job_kwargs: T.Any,
    ) -> None:
        if not isinstance(cmd, str) or not cmd.strip():
            raise TypeError(f"cmd must be a non-empty shell command string, got {cmd!r}")
        if not isinstance(record_cmd, bool):
            raise TypeError(f"record_cmd must be True or False, got {record_cmd!r}")
        if not isinstance(target_dir, (str, Path)) or not str(target_dir):
            raise TypeError(f"target_dir must be a directory path, '$current_dir' or '$cache_dir', got {target_dir!r}")
        for forbidden, hint in (("func", "the command is the job's function"), ("args", "put them in cmd"),
                                ("kwargs", "put them in cmd"), ("change_dir", "use target_dir")):
            if forbidden in job_kwargs:
                raise TypeError(f"SubprocessJob does not take {forbidden}=: {hint}")
        self.cmd = cmd
        self.record_cmd = record_cmd
        self.base_class = base_class
        self.target_dir = str(target_dir)
        self.popen_kwargs = check_popen_kwargs(
            popen_kwargs, in_worker_process=isinstance(base_class, type) and issubclass(base_class, ProcessJob))
        redirect = str(redirect_out_err) if isinstance(redirect_out_err, Path) else redirect_out_err
        super().__init__(run_command_blocking, callback=callback, error_callback=error_callback, retries=retries,
                         retry_time_delta=retry_time_delta, name=name if name is not None else _short_name(cmd),
                         condition=condition, wait_time_delta=wait_time_delta, redirect_out_err=redirect,
                         **job_kwargs)
        self.attrs.update(cmd=cmd, target_dir=self.target_dir)

    # ---------------------------------------------------------------- hooks
    def call_options(self) -> CallOptions:
        """Nothing to wrap around the call: the command's streams and directory are set on the process."""
        return CallOptions()

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Run the command where ``base_class`` runs things and return its return code."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        return await self.run_command(self.command_spec)

    def thread_call(self, func: T.Callable[..., T.Any], args: tuple,
                    kwargs: dict) -> tuple[T.Callable[..., T.Any], tuple, dict]:
        """On ThreadJob (engine fast path): the pool thread builds the command spec and runs it."""
        return self.command_thread_call(self.command_spec)

    def cancel_thread_call(self) -> T.Optional[T.Coroutine[T.Any, T.Any, None]]:
        """On ThreadJob (engine fast path): stop the cancelled command's process group."""
        return self.stop_command_thread()

    # ------------------------------------------------------------- running
    def command_spec(self, pgid_path: str | None = None) -> CommandSpec:
        """The command with its directory and output files resolved (creating what they need)."""
        # the runner writes the record where it runs (off the engine loop: disks can be slow)
        record_path = str(self.cache_dir.absolute() / COMMAND_FILE) if self.record_cmd else None
        stdout_path, stderr_path = self.output_paths()
        return CommandSpec(self.cmd, self._working_dir(), stdout_path, stderr_path, self.popen_kwargs, pgid_path,
                           record_path)

    def _working_dir(self) -> str:
        if self.target_dir == CURRENT_DIR:
            return os.getcwd()  # the common case: already absolute, and it exists
        text = self.target_dir
        if CACHE_DIR in text:
            text = text.replace(CACHE_DIR, str(self.cache_dir_made()))
        text = text.replace(CURRENT_DIR, os.getcwd())
        path = Path(text).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"target_dir {self.target_dir!r} ({path}) is not an existing directory")
        return str(path)


def _short_name(cmd: str) -> str:
    first = cmd.strip().split()[0]
    return os.path.basename(first) or first


def job_class_on(base_class: object) -> type[SubprocessJob]:
    """The SubprocessJob class that supervises its command the way ``base_class`` runs jobs."""
    return variant(SubprocessJob, base_class)


for _base in STANDARD_BASES:
    job_class_on(_base)


SubprocessJob.__signature__ = signature_of_init(SubprocessJob)  # type: ignore[attr-defined]
