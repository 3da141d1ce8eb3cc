"""Stop the commands this process started if it dies without doing so itself.

A command runs in a process group of its own (so that one ``killpg`` stops all
of it), which also means that nothing stops it when the process that started
it is SIGKILLed or crashes: it is not in our group, and it is not our thread.
:class:`GroupGuard` closes that gap with a watchdog process per Python
process, started on the first command:

* the groups of running commands are kept in a table of 32-bit slots in a
  ``memfd`` shared with the watchdog; registering or clearing a group is a
  write into mapped memory, no system call and no wake-up of the watchdog;
* the watchdog blocks reading a pipe whose only writer is this process, which
  never writes to it: end-of-file means this process is gone, however it ended.
  It then SIGTERMs every group still in the table, gives them
  :data:`GRACE` seconds, SIGKILLs what is left, removes this process's
  scratch folder (retrying for up to :data:`GRACE` seconds: a pool worker of
  the dead process may still publish a file there until it is killed too) and
  exits. After a normal exit the table is empty and it just exits.

The watchdog is started through ``sh -c '... &'`` so it is not a child of this
process (it belongs to no test's or engine's process tree) and is in a session
of its own, out of reach of the terminal's Ctrl-C. It lives until this process
ends, or until the last engine stops with no command running
(:meth:`GroupGuard.close_if_idle`). A forked child (a process-pool worker) gets a watchdog of its
own on its first command: the mapped table it inherits belongs to its parent.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import subprocess
import sys
import tempfile
import threading
import typing as T

from ...._kill import WATCHDOG_FOLDER_PREFIX
from ...log import logger

__all__ = ["GRACE", "GroupGuard", "close_idle_guard", "guard"]

#: Seconds the watchdog gives the groups of an owner that died to exit after SIGTERM.
GRACE = 2.0
_SLOT = struct.Struct("=i")
_INITIAL_SLOTS = 1024

# Runs under ``python -I -S``: builtin modules only. argv: pipe fd, table fd, grace, scratch dir.
_WATCHDOG = """
import array, os, signal, sys, time
pipe_fd, table_fd, grace, scratch = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)
while True:
    try:
        if not os.read(pipe_fd, 64):
            break
    except InterruptedError:
        continue
table = array.array("i")
table.frombytes(os.pread(table_fd, os.fstat(table_fd).st_size, 0))
groups = {g for g in table if g > 0}
def signal_all(sig):
    alive = set()
    for g in groups:
        try:
            os.killpg(g, sig)
            alive.add(g)
        except OSError:
            pass
    return alive
groups = signal_all(signal.SIGTERM)
deadline = time.monotonic() + grace
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    groups = signal_all(0)
signal_all(signal.SIGKILL)
# a worker of the dead owner may still write a file here until it is killed too: retry for a while
deadline = time.monotonic() + grace
while True:
    try:
        for name in os.listdir(scratch):
            try:
                os.unlink(os.path.join(scratch, name))
            except OSError:
                pass
        os.rmdir(scratch)
        break
    except FileNotFoundError:
        break
    except OSError:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
"""


class GroupGuard:
    """The table of this process's running command groups, watched by a watchdog process.

    Use :func:`guard` to get the one of the current process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: mmap.mmap | None = None
        self._free: list[int] = []
        self._pipe_fd: int | None = None  # write end, never written: its closing is the signal
        #: a private folder for small files about running commands; the watchdog removes it
        self._scratch: str | None = None
        # the watchdog runs ``sys.executable -c``: not possible without one, nor in a frozen app
        # (there it would start the app itself)
        self.enabled = hasattr(os, "memfd_create") and bool(sys.executable) and not getattr(sys, "frozen", False)

    def add(self, pgid: int) -> int:
        """Register running group ``pgid``; the slot to :meth:`remove` it with (-1: not guarded).

        Never raises: the command has started, and a guard that cannot be
        set up must not turn it into one nobody supervises.
        """
        return self._take_slot(pgid)

    def ready(self) -> None:
        """Start the watchdog now if it is not running (before a command starts, not after).

        Starting it takes a few milliseconds; done after the command started,
        a death of this process in that time (a pool worker killed on cancel)
        left the command unsupervised. :meth:`add` is then a write into memory.
        """
        if not self.enabled:
            return
        if self._table is not None and self._scratch is not None and not os.path.isdir(self._scratch):
            # its watchdog was killed with this process's leftovers (executor._kill.kill_tree removes
            # the folder then): let it go, and start another below
            self.close_if_idle()
        if self._table is not None:
            return
        with self._lock:
            if self._table is not None:
                return
            try:
                self._start()
            except (OSError, ValueError, subprocess.SubprocessError) as error:
                logger.debug(f"command groups are not guarded against this process's death: {error!r}")

    def reserve(self) -> tuple[int, T.Callable[[], None] | None]:
        """A slot for a command about to start, and a function that fills it in the command's child process.

        Called in the child before ``exec`` (``preexec_fn``), the function
        writes the child's pid (its group id: it leads a new session) into the
        shared table, so the group is guarded from its first instruction on,
        even if this process dies before ``Popen`` returns. ``(-1, None)``:
        not guarded. Fill the slot with :meth:`fill` (or free it with
        :meth:`remove` if the start failed).
        """
        slot = self._take_slot(0)
        table = self._table
        if slot < 0 or table is None:
            return -1, None
        offset = slot * _SLOT.size

        def claim_in_child() -> None:
            _SLOT.pack_into(table, offset, os.getpid())

        return slot, claim_in_child

    def fill(self, slot: int, pgid: int) -> None:
        """Write ``pgid`` into a slot from :meth:`reserve` (the child may have done so already)."""
        if slot < 0 or self._table is None:
            return
        with self._lock:
            _SLOT.pack_into(self._table, slot * _SLOT.size, pgid)

    def scratch_dir(self) -> str | None:
        """A private folder for files about this process's running commands, removed by the watchdog.

        The watchdog removes it (and what is in it) when this process ends,
        however it ends, or at :meth:`close_if_idle`. None without a watchdog.
        """
        self.ready()
        return self._scratch

    def remove(self, slot: int) -> None:
        """Forget a group that is gone (``slot`` from :meth:`add`)."""
        if slot < 0 or self._table is None:
            return
        with self._lock:
            _SLOT.pack_into(self._table, slot * _SLOT.size, 0)
            self._free.append(slot)

    def close_if_idle(self) -> bool:
        """Let the watchdog go if no group is registered (it exits on end-of-file); True if so.

        The next command starts a new one.
        """
        with self._lock:
            if self._table is None:
                return True
            if len(self._free) * _SLOT.size != len(self._table):
                return False
            table, pipe_fd = self._table, self._pipe_fd
            self._table, self._pipe_fd, self._free, self._scratch = None, None, [], None
        table.close()
        if pipe_fd is not None:
            os.close(pipe_fd)
        return True

    # ------------------------------------------------------------- internals
    def _take_slot(self, pgid: int) -> int:
        """A free slot holding ``pgid`` (the watchdog started if needed); -1 if groups cannot be guarded."""
        self.ready()
        with self._lock:
            if self._table is None:
                return -1
            try:
                if not self._free:
                    self._grow()
            except (OSError, ValueError) as error:
                logger.debug(f"command groups are not guarded against this process's death: {error!r}")
                return -1
            slot = self._free.pop()
            _SLOT.pack_into(self._table, slot * _SLOT.size, pgid)
        return slot

    def _start(self) -> bool:
        table_fd = os.memfd_create("executor-command-groups", os.MFD_CLOEXEC)
        read_fd, write_fd = os.pipe()
        # named now, made once the watchdog runs: a death in between leaves no folder that nobody removes
        scratch = os.path.join(tempfile.gettempdir(), f"{WATCHDOG_FOLDER_PREFIX}{secrets.token_hex(8)}")
        try:
            os.ftruncate(table_fd, _INITIAL_SLOTS * _SLOT.size)
            table = mmap.mmap(table_fd, _INITIAL_SLOTS * _SLOT.size)
            # sh puts the watchdog in the background and exits: it is nobody's child here
            starter = subprocess.Popen(
                ["/bin/sh", "-c", 'exec "$0" -I -S -c "$1" "$2" "$3" "$4" "$5" </dev/null >/dev/null 2>&1 &',
                 sys.executable, _WATCHDOG, str(read_fd), str(table_fd), str(GRACE), scratch],
                pass_fds=(read_fd, table_fd), start_new_session=True, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            starter.wait()
            os.mkdir(scratch, 0o700)  # fails, rather than share, if the name was taken
        except (OSError, subprocess.SubprocessError) as error:
            os.close(write_fd)  # the watchdog, if it started, exits
            self.enabled = False  # commands still run; only the crash clean-up is lost
            logger.debug(f"no watchdog for command groups: {error!r}")
            return False
        finally:
            os.close(read_fd)
            os.close(table_fd)  # the mapping and the watchdog keep the table alive
        self._table, self._pipe_fd, self._scratch = table, write_fd, scratch
        self._free = list(range(_INITIAL_SLOTS - 1, -1, -1))
        return True

    def _grow(self) -> None:
        assert self._table is not None
        slots = len(self._table) // _SLOT.size
        self._table.resize(2 * slots * _SLOT.size)  # also grows the memfd the watchdog reads
        self._free.extend(range(2 * slots - 1, slots - 1, -1))


_guard: GroupGuard | None = None
_guard_lock = threading.Lock()


def close_idle_guard() -> None:
    """Let this process's watchdog go if no command is running (``Engine.stop()`` of the last engine)."""
    if _guard is not None:
        _guard.close_if_idle()


def guard() -> GroupGuard:
    """This process's :class:`GroupGuard` (created on first use; a fresh one in a forked child)."""
    global _guard
    if _guard is None:
        with _guard_lock:
            if _guard is None:
                _guard = GroupGuard()
    return _guard


#: set on a thread while it starts a command whose child claims its slot (see GroupGuard.reserve)
spawning = threading.local()


def _forget_parents_guard() -> None:
    # the inherited table is the parent's: writing to it would corrupt its watchdog's view, and
    # holding its pipe would keep that watchdog waiting for this child too
    global _guard, _guard_lock
    inherited, _guard = _guard, None
    _guard_lock = threading.Lock()  # another thread may have held it at the fork
    if getattr(spawning, "claiming", False):
        return  # a command's child, about to claim its slot in that table and exec (which drops it all)
    if inherited is not None and inherited._table is not None:
        inherited._table.close()
        if inherited._pipe_fd is not None:
            os.close(inherited._pipe_fd)


os.register_at_fork(after_in_child=_forget_parents_guard)
