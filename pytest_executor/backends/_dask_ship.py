"""Shipping the suite to a dask cluster: what goes, where it lands, and how sessions find it.

A cluster given by address (or by the ``pytest_executor_dask_client`` hook)
shares no filesystem with the controller.  Before sessions start, the rootdir
is zipped into a :class:`ShippedCopy` nanny plugin registered with the
cluster: the scheduler keeps it and hands it to each nanny, also to those that
join later (distributed's own plugin mechanism, as its ``UploadDirectory``
uses), and the nanny unpacks it.  ``UploadDirectory`` itself is not used: it
unpacks in place into the nanny's local directory, which several nannies share
when they were started with one ``--local-directory`` (``dask worker
--nworkers N``, or several workers pointed at one folder) — a later nanny
re-extracts over files a running session reads, and the first one to close
would remove the copy the others still use.  So each nanny gets a copy of its
own (named for the run and the nanny, ``pytest-executor-<run id>-<nanny>``),
unpacked into a hidden folder first and renamed into place whole; runs sharing
a cluster never overwrite each other's files either.

What is shipped: every file under the rootdir (tests, conftests, ini files, a
local package source such as ``src/``, data files), except version-control
and cache folders, virtual environments and bytecode.  What is not: installed
packages — pytest-executor and the suite's dependencies must be installed on
the workers (:func:`check_versions` fails the run at start, naming the worker,
when pytest-executor is missing or another version).

Sessions run from the copy: absolute paths inside the rootdir in the command
line are rewritten to the copy, the working directory is the copy's
counterpart of the controller's, and the copy's counterparts of the
controller's source roots inside the rootdir (``sys.path`` entries, editable
installs) go on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from distributed.diagnostics.plugin import NannyPlugin

_SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox",
     ".hypothesis", "node_modules", ".eggs", ".venv"}
)
"""Folders never shipped (anywhere under the rootdir)."""

Arg = str | tuple[str, str, str]
"""A command-line argument: as is, or ``(head, path relative to the rootdir, tail)`` to map onto the copy."""


@dataclass
class Shipment:
    """What a session needs to run from the run's copy of the rootdir."""

    name: str
    """The copy's folder name on each worker (unique per run)."""
    cwd: str = ""
    """The session's working directory, relative to the copy."""
    pythonpath: list[str] = field(default_factory=list)
    """Source roots relative to the copy, put first on the session's ``PYTHONPATH``."""
    plugin_name: str = ""


class ShippedCopy(NannyPlugin):
    """The run's copy of the rootdir: unpacked by each nanny into a folder of its own, removed when it goes.

    The copy is unpacked into a hidden temporary folder beside its final place
    and renamed into place whole, so a session never sees a half-written
    tree.  :meth:`teardown` runs when the nanny closes (a retired worker: the
    clean-up at the end of the run would not reach it any more) and when the
    plugin is unregistered at the end of the run.
    """

    def __init__(self, copy: str, data: bytes) -> None:
        self.name = copy
        self.copy = copy
        self.data = data

    def _root(self, nanny: Any) -> str:
        from pytest_executor.backends._dask_copy import copy_folder

        return os.path.join(nanny.local_directory, copy_folder(self.copy, str(nanny.address)))

    def setup(self, nanny: Any) -> None:
        """Unpack the copy for this nanny (atomically; a copy already there is kept)."""
        import io
        import zipfile

        root = self._root(nanny)
        if os.path.isdir(root):
            return
        stage = tempfile.mkdtemp(prefix=f".{self.copy}-", dir=nanny.local_directory)
        try:
            with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
                archive.extractall(stage)
            unpacked = os.path.join(stage, self.copy)
            os.makedirs(unpacked, exist_ok=True)  # an empty rootdir
            os.rename(unpacked, root)
        except OSError:
            if not os.path.isdir(root):
                raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def teardown(self, nanny: Any) -> None:
        """Remove this nanny's copy and its sessions' scratch folders."""
        from pytest_executor.backends._dask_copy import remove_run_dirs

        remove_run_dirs(self._root(nanny))


def _is_venv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _skip_predicate(top: str) -> Any:
    """A predicate for the archive: True for files that must not be shipped."""
    venv = functools.lru_cache(maxsize=None)(_is_venv)

    def skip(filename: str) -> bool:
        if filename.endswith((".pyc", ".pyo")):
            return True
        rel = os.path.relpath(filename, top)
        parts = rel.split(os.sep)[:-1]
        if any(part in _SKIPPED_DIRS or part.endswith(".egg-info") for part in parts):
            return True
        here = top
        for part in parts:
            here = os.path.join(here, part)
            if venv(here):
                return True
        return False

    return skip


def _archive(top: str, skip: Any) -> bytes:
    """A zip of ``top`` with names under its folder name (``<name>/...``), files dated before 1980 allowed."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as archive:
        for folder, _, files in os.walk(top):
            for name in files:
                filename = os.path.join(folder, name)
                if not skip(filename):
                    archive.write(filename, os.path.relpath(filename, os.path.join(top, "..")))
    return buffer.getvalue()


def check_versions(client: Any, version: str) -> None:
    """Fail (``pytest.UsageError``) when a worker lacks pytest-executor or has another version."""
    from importlib.metadata import version as installed

    answers = client.run(installed, "pytest-executor", on_error="return")
    wrong = []
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            wrong.append(f"{address}: pytest-executor is not installed ({type(answer).__name__}: {answer})")
        elif answer != version:
            wrong.append(f"{address}: pytest-executor {answer}")
    if wrong:
        raise pytest.UsageError(
            f"--executor-backend=dask: every dask worker needs pytest-executor {version} (the controller's) "
            "and the suite's dependencies installed; these workers differ:\n  " + "\n  ".join(wrong)
        )


def ship(client: Any, config: pytest.Config, run_id: str) -> Shipment:
    """Register the run's copy of the rootdir with the cluster (it reaches every nanny, now and later)."""
    rootdir = str(config.rootpath)
    shipment = Shipment(f"pytest-executor-{run_id}")
    stage = tempfile.mkdtemp(prefix="pytest-executor-ship-")
    try:
        # The archive's names start with the folder it is made from: a link named for the run.
        link = os.path.join(stage, shipment.name)
        os.symlink(rootdir, link)
        data = _archive(link, _skip_predicate(link))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    shipment.plugin_name = shipment.name
    client.register_plugin(ShippedCopy(shipment.name, data))
    invocation = Path(config.invocation_params.dir).resolve()
    with contextlib.suppress(ValueError):
        shipment.cwd = str(invocation.relative_to(Path(rootdir).resolve()))
        if shipment.cwd == ".":
            shipment.cwd = ""
    shipment.pythonpath = source_roots(Path(rootdir))
    return shipment


def unship(client: Any, shipment: Shipment) -> None:
    """Unregister the copy (no later worker gets it; each nanny removes its own) and remove what is left."""
    from pytest_executor.backends._dask_copy import remove_copy

    with contextlib.suppress(Exception):
        client.unregister_worker_plugin(shipment.plugin_name, nanny=True)
    with contextlib.suppress(Exception):
        client.run(remove_copy, shipment.name, on_error="ignore")


def source_roots(rootdir: Path) -> list[str]:
    """Folders inside ``rootdir`` the controller imports from, relative to it (``""``: the rootdir)."""
    root = rootdir.resolve()
    candidates: list[str] = [entry for entry in sys.path if entry]
    for name, module in list(sys.modules.items()):
        # setuptools' editable installs map packages to their source folders in a finder module
        if name.startswith("__editable___") and name.endswith("_finder"):
            mapping = getattr(module, "MAPPING", {})
            candidates += [str(Path(path).parent) for path in mapping.values()]
    found: list[str] = []
    for entry in candidates:
        try:
            path = Path(entry).resolve()
            rel = path.relative_to(root)
        except (OSError, ValueError):
            continue
        if any(part in _SKIPPED_DIRS for part in rel.parts) or _is_venv(str(path)) or not path.is_dir():
            continue
        text = "" if str(rel) == "." else str(rel)
        if text not in found:
            found.append(text)
    return found


def remap_args(args: list[str], config: pytest.Config) -> list[Arg]:
    """The session's arguments when the tree is shipped: paths inside the rootdir become references into the copy."""
    root = config.rootpath.resolve()
    invocation = Path(config.invocation_params.dir)
    inside = True
    try:
        invocation.resolve().relative_to(root)
    except ValueError:
        inside = False
    return [_remap(arg, invocation, root, inside) for arg in args]


def _remap(arg: str, invocation: Path, root: Path, cwd_inside: bool) -> Arg:
    head, value = "", arg
    if arg.startswith("-"):
        if "=" not in arg:
            return arg
        option, _, value = arg.partition("=")
        head = option + "="
    path_part, colons, rest = value.partition("::")
    if not path_part:
        return arg
    if os.path.isabs(path_part):
        path = Path(path_part)
    elif not cwd_inside and (invocation / path_part).exists():
        # relative to a working directory that has no counterpart in the copy
        path = invocation / path_part
    else:
        return arg  # relative to the working directory, which the copy mirrors
    try:
        rel = path.resolve().relative_to(root)
    except (OSError, ValueError):
        return arg
    return (head, "" if str(rel) == "." else str(rel), colons + rest)


__all__ = ["Arg", "Shipment", "ShippedCopy", "check_versions", "remap_args", "ship", "source_roots", "unship"]
