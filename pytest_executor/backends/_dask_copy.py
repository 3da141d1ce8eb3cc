"""The dask worker's side of a run, outside the host task's event loop: the shipped copy and the session's start.

:func:`copy_root` says where a worker's nanny unpacked the run's copy of the
test tree (:mod:`~pytest_executor.backends._dask_ship`), :func:`remove_copy`
removes it at the end.  :func:`session_host` is the host of a session's worker
state (:mod:`~pytest_executor.backends._dask_host`): it runs in the worker of
the host task's engine pool, which imports this module to unpickle it, so the
module imports no more than the session needs (no asyncio, no engine pool).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from pytest_executor.backends import _hosted
from pytest_executor.backends._protocol import ENV_PATH_MAP

ENV_DASK_WORKER = "PYTEST_EXECUTOR_DASK_WORKER"
"""Set in a session to the address of the dask worker hosting it."""


def copy_folder(name: str, nanny_address: str) -> str:
    """The folder name of the run's copy ``name`` for the nanny at ``nanny_address`` (one copy per nanny)."""
    return f"{name}-{re.sub(r'[^A-Za-z0-9.]+', '-', nanny_address).strip('-')}"


def copy_root(worker: Any, name: str) -> str:
    """Where ``worker``'s nanny unpacked the copy ``name`` (:class:`~pytest_executor.backends._dask_ship.ShippedCopy`).

    The nanny unpacks it into its own local directory, the parent of the
    worker's (``<local-directory>/dask-scratch-space``), in a folder named
    for the nanny too: nannies may share that directory.
    """
    return os.path.join(os.path.dirname(worker.local_directory), copy_folder(name, str(worker.nanny or "")))


def remove_copy(name: str, dask_worker: Any = None) -> None:
    """Run on each worker at the end (``client.run``): remove the run's copy and scratch there."""
    if dask_worker is not None:
        remove_run_dirs(copy_root(dask_worker, name))


def remove_run_dirs(root: str) -> None:
    """Remove a run's copy at ``root`` and its sessions' scratch folders."""
    import shutil

    for path in (root, root + "-tmp"):
        shutil.rmtree(path, ignore_errors=True)


def _resolve(arg: Any, root: str | None) -> str:
    """An argument as sent: a string, or ``(head, relative path, tail)`` inside the shipped copy."""
    if isinstance(arg, str):
        return arg
    head, rel, tail = arg
    assert root is not None
    return f"{head}{os.path.join(root, rel) if rel else root}{tail}"


def session_host(spec: dict[str, Any], root: str | None, serve: _hosted.Serve) -> int:
    """The host of a dask session's worker state, in the pool's worker: pytest over the controller's arguments.

    From the copy at ``root`` when the tree was shipped.  The worker was forked
    by a ``python -c`` zygote: ``sys.path`` is made that of a fresh
    ``python -m pytest`` (working directory first) or of the ``pytest`` script
    (not importable), with ``PYTHONPATH`` (and the copy's source roots) in front.
    """
    env = {**spec["env"], ENV_DASK_WORKER: spec["dask_worker"]}
    args = [_resolve(arg, root) for arg in spec["argv"]]
    cwd = spec["cwd"] if root is None else os.path.join(root, spec["cwd"])
    basetemp = spec["basetemp"]
    paths = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
    if root is not None:
        basetemp = root + "-tmp"
        os.makedirs(basetemp, mode=0o700, exist_ok=True)
        paths = [os.path.join(root, rel) if rel else root for rel in spec["pythonpath"]] + paths
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env[ENV_PATH_MAP] = f"{root}\n{spec['rootdir']}"
    os.chdir(cwd)
    sys.path[:] = ([cwd] if spec["module"] else []) + paths + [p for p in sys.path if p not in ("", cwd, *paths)]
    return _hosted.host_session(args, basetemp, env, "d", serve, label=spec["wid"], compact_reports=True)



__all__ = ["ENV_DASK_WORKER", "copy_folder", "copy_root", "remove_copy", "remove_run_dirs", "session_host"]
