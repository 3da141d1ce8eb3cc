"""A spare zygote in each process of a ``multiprocessing`` fork server (the dask workers of our LocalClusters).

A process pool made inside a dask worker (the pytest plugin's dask sessions
make one each) cannot fork its zygote from that worker, which runs threads:
without a spare it starts a fresh ``python -c`` zygote, and the pool's worker
imports pytest and its plugins again — about 0.35 s of CPU a session, most of
a cluster's start when 16 sessions start on 2 cores.  The fork server of a
LocalCluster we start has imported those modules once (its preload list).
When that list also names :mod:`._spare_preload`, each process the server
forks forks first, while it is still single-threaded, a zygote of itself with
those modules imported; the first pool made in that process adopts it
(:func:`take_spare`).  A process that never makes one leaves its spare idle;
it ends with that process (its control socket closes).

The spare starts as a copy of a dask worker about to start, so what
``multiprocessing`` set up for that worker is undone in it
(:func:`forget_parent_process`): the workers it forks see a main process of
their own, not a daemonic child of the fork server, and the default start
method, fork server and resource tracker of a fresh interpreter.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.resource_tracker
import os
import typing as T

from ._zygote import SpareZygote, can_fork_zygote, fork_zygote

_spare: SpareZygote | None = None
"""This process's spare zygote, until a pool takes it."""


def fork_spare(server_pid: int) -> None:
    """Fork this process's spare zygote, if it is a child of the fork server ``server_pid`` and may fork."""
    global _spare
    if os.getppid() != server_pid or _spare is not None:
        return  # a process started later by one of the server's (a test's, say): not ours to equip
    if can_fork_zygote(wait=0) and _can_forget():
        _spare = fork_zygote(prepare=forget_parent_process)


def take_spare() -> SpareZygote | None:
    """This process's spare zygote, once (None if it has none, or it died)."""
    global _spare
    spare, _spare = _spare, None
    if spare is not None and not spare.alive:
        spare.close()
        return None
    return spare


_PRIVATE = {
    multiprocessing.process: ("_current_process", "_parent_process", "_process_counter", "_children", "AuthenticationString"),
    multiprocessing.context: ("_default_context",),
    multiprocessing.forkserver: ("_forkserver", "ForkServer"),
    multiprocessing.resource_tracker: ("_resource_tracker", "ResourceTracker"),
}
"""What :func:`forget_parent_process` resets, by module: where a Python lacks one, no spare is made."""


def _can_forget() -> bool:
    return all(hasattr(module, name) for module, names in _PRIVATE.items() for name in names) and hasattr(
        T.cast(T.Any, multiprocessing.context)._default_context, "_actual_context"
    )


def forget_parent_process() -> None:
    """Make ``multiprocessing`` see this process as a fresh interpreter's main process.

    Run in a spare zygote: it was forked from a fork server's child, whose
    process object is daemonic (so could start no child), whose start method
    was forced to the server's and which shares the server's resource tracker.
    """
    process = T.cast(T.Any, multiprocessing.process)
    # The object of the worker about to start becomes a main process's (multiprocessing deletes
    # its main-process class once it made its one instance).  Its target held the worker's
    # arguments, the cluster's credentials among them: dropped.
    current = process.current_process()
    current._identity, current._name, current._parent_pid, current._popen = (), "MainProcess", None, None
    current._target, current._args, current._kwargs = None, (), {}
    current._config = {"authkey": process.AuthenticationString(os.urandom(32)), "semprefix": "/mp"}
    process._parent_process = None
    process._process_counter = itertools.count(1)
    process._children = set()
    T.cast(T.Any, multiprocessing.context)._default_context._actual_context = None
    forkserver = T.cast(T.Any, multiprocessing.forkserver)
    forkserver._forkserver = forkserver.ForkServer()
    for name in ("ensure_running", "get_inherited_fds", "connect_to_new_process", "set_forkserver_preload"):
        setattr(forkserver, name, getattr(forkserver._forkserver, name))
    tracker = T.cast(T.Any, multiprocessing.resource_tracker)
    tracker._resource_tracker = tracker.ResourceTracker()
    for name in ("ensure_running", "register", "unregister", "getfd"):
        setattr(tracker, name, getattr(tracker._resource_tracker, name))


__all__ = ["fork_spare", "forget_parent_process", "take_spare"]
