"""A ``LocalCluster`` that only this process can use, and the private scratch folders of dask clusters.

Shared by the engine's :class:`~executor.engine.backend.dask.DaskBackend` and
the pytest plugin's ``dask`` backend (re-exported by
:mod:`executor.engine.backend.dask`), so both start clusters the same secure way.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import tempfile
import typing as T

from ..log import logger
from ._dask_imports import check_tls_support
from ._dask_imports import import_distributed as _import_distributed

if T.TYPE_CHECKING:
    from distributed import Client


def local_cluster_options(n_workers: int, threads_per_worker: int, scratch: str, quiet: int = logging.ERROR) -> dict[str, T.Any]:
    """Keyword arguments for a ``LocalCluster`` (or ``Client``) that only this process can use.

    Worker processes, TLS with temporary certificates that only this process
    holds (``security=True``: other local users can neither connect nor
    submit; :class:`LocalDaskCluster` passes :func:`temporary_security`
    instead), scheduler and workers on 127.0.0.1, the dashboard on a free
    loopback port (never on the network, never 8787 of a user's cluster) and
    scratch space in ``scratch`` (private, removed by whoever made it).
    """
    return {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        "security": True,
        "silence_logs": quiet,
        "local_directory": scratch,
    }


def temporary_security() -> T.Any:
    """A ``distributed.Security`` for every role of a cluster: one self-signed certificate, held in memory only.

    What ``security=True`` (``Security.temporary()``) gives, TLS required, but
    with an elliptic-curve key (P-256) instead of a 2048-bit RSA one: making
    the key takes well under a millisecond instead of about a tenth of a
    second, and every TLS handshake of the cluster signs with it.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from distributed.security import Security

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = certificate.public_bytes(serialization.Encoding.PEM).decode()
    secret = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()
    roles = {f"tls_{role}_{part}": value for role in ("client", "scheduler", "worker")
             for part, value in (("cert", cert), ("key", secret))}
    return Security(require_encryption=True, tls_ca_file=cert, **roles)


class LocalDaskCluster:
    """A synchronous ``LocalCluster`` with :func:`local_cluster_options` and a private scratch folder.

    For synchronous callers (the pytest plugin); :meth:`close` closes the
    cluster and removes the scratch folder, whatever happened before.

    Worker processes are forked from a ``multiprocessing`` fork server that
    imported ``distributed`` (and the ``preload`` modules) once, where Linux
    has one: dask's default, ``spawn``, starts a fresh interpreter per worker
    that imports it all again — about a second of CPU each, most of the start
    of a cluster of many workers on few cores.  ``config``: more dask settings
    for the cluster (its workers get them too).

    ``start_workers``: how many of the ``n_workers`` to wait for before the
    cluster is returned (default: all of them); :meth:`grow` starts the rest
    in the background.  A caller that can use workers as they come (the
    plugin, whose sessions follow the cluster) then starts working after the
    first worker's start rather than after the last one's, and the others
    start while it works.
    """

    def __init__(self, n_workers: int, threads_per_worker: int = 1, preload: T.Sequence[str] = (),
                 config: T.Mapping[str, T.Any] | None = None, start_workers: int | None = None) -> None:
        check_tls_support()  # before anything is started that a refusal would leave behind (a fork server)
        # The fork server imports while this process imports distributed and starts the scheduler.
        self._fork_server = _start_fork_server(preload)
        self.scratch: str | None = None
        try:
            distributed = _import_distributed()
            import dask

            # dask's default scratch space is shared and kept in the temp dir: ours is private and removed;
            # a task whose worker dies fails at once (the caller replaces it), as on the engine's own cluster
            self.scratch = make_scratch()
            settings: dict[str, T.Any] = {"temporary-directory": self.scratch,
                                          "distributed.scheduler.allowed-failures": 0, **(config or {})}
            if self._fork_server:
                settings["distributed.worker.multiprocessing-method"] = "forkserver"
            self.n_workers = n_workers
            self._settings = settings
            first = n_workers if start_workers is None else max(1, min(start_workers, n_workers))
            options = {**local_cluster_options(first, threads_per_worker, self.scratch),
                       "security": temporary_security()}
            with dask.config.set(settings):
                self.cluster: T.Any = distributed.LocalCluster(**options)
        except BaseException:
            self._release()
            raise

    def grow(self, timeout: float = 60.0) -> None:
        """Start the workers not started yet (see ``start_workers``) and wait until all of them joined.

        Blocking: call it from a thread of your own to use the workers as they
        join.  Closing the cluster meanwhile ends the wait (with an error).
        """
        import dask

        # dask reads its settings where the new nannies are made, on the cluster's loop, while this waits
        with dask.config.set(self._settings):
            self.cluster.scale(self.n_workers)
            self.cluster.wait_for_workers(self.n_workers, timeout=timeout)

    @property
    def security(self) -> T.Any:
        """The cluster's temporary TLS credentials (a ``distributed.Security``)."""
        return self.cluster.security

    def client(self) -> "Client":
        """A new synchronous client of this cluster (the caller closes it)."""
        distributed = _import_distributed()
        return T.cast("Client", distributed.Client(self.cluster, set_as_default=False))

    def close(self, timeout: float = 10.0) -> None:
        """Close the cluster (best effort) and remove its scratch folder."""
        try:
            self.cluster.close(timeout=timeout)
        except Exception as error:  # closing is best effort: the scratch folder goes anyway
            logger.debug("closing a LocalCluster: {!r}", error)
        finally:
            self._release()

    def _release(self) -> None:
        """Stop the fork server and remove the scratch folder."""
        if self._fork_server:  # it would outlive this process a moment; there is no public way to end it
            server = multiprocessing.forkserver._forkserver
            # Killed, not asked to stop: it holds nothing to save, and its own interpreter's end (a
            # garbage collection over distributed, pytest and the rest it imported) took a tenth of a
            # second that the run waited for.
            with contextlib.suppress(Exception):
                pid = getattr(server, "_forkserver_pid", None)
                if pid:
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                getattr(server, "_stop", lambda: None)()
        if self.scratch is not None:
            remove_scratch(self.scratch)


_DISTRIBUTED_PRELOAD = ("distributed", "dask", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas", "lz4")
"""What distributed's own fork server imports first, of what is installed (its required and optional packages)."""


def _start_fork_server(preload: T.Sequence[str]) -> bool:
    """Whether worker processes can come from a fork server; if so, start it now, importing ``preload`` too.

    distributed would start it with its first worker, after importing each of
    its optional packages in this process to learn which are installed;
    ``find_spec`` learns it without importing them.  A fork server running
    already (an earlier cluster of this process) keeps its own list.
    """
    if not sys.platform.startswith("linux") or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if importlib.util.find_spec("distributed") is None:
        return False  # the import that follows says what to install
    listed = [name for name in _DISTRIBUTED_PRELOAD if importlib.util.find_spec(name) is not None]
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        [*listed, *(name for name in preload if name not in listed)]
    )
    multiprocessing.forkserver.ensure_running()
    return True


def make_scratch() -> str:
    """A new private scratch folder for a cluster (removed by :func:`remove_scratch`, or at exit)."""
    scratch = tempfile.mkdtemp(prefix="executor-dask-")
    _scratch_dirs.add(scratch)
    _quiet_scratch_removal()
    return scratch


def remove_scratch(scratch: str) -> None:
    """Remove a folder made by :func:`make_scratch`."""
    shutil.rmtree(scratch, ignore_errors=True)
    _scratch_dirs.discard(scratch)


_scratch_dirs: set[str] = set()
"""Scratch folders made and not removed yet, removed at exit at the latest: an engine used from
asyncio without ``stop()`` (its loop ends, and the cluster with it, but nothing calls ``close()``)
must not leave them in the temp dir."""


class _OwnScratchFilter(logging.Filter):
    """Drops distributed's "Failed to remove" errors about our own scratch folders.

    The engine removes a LocalCluster's scratch folder itself once the cluster
    is closed; a scheduler or worker folder whose ``distributed`` finalizer runs
    after that (garbage collection, interpreter exit) finds it gone and would
    log an error about a folder that was removed as intended.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a removal error about a path under one of our scratch folders."""
        if "Failed to remove" not in str(record.msg):
            return True
        text = record.getMessage()
        return not any(scratch in text for scratch in _scratch_roots)


_scratch_roots: set[str] = set()
"""Every scratch folder a backend of this process made (kept: finalizers may run late)."""
_scratch_filter = _OwnScratchFilter()


def _quiet_scratch_removal() -> None:
    _scratch_roots.update(_scratch_dirs)
    diskutils = logging.getLogger("distributed.diskutils")
    if _scratch_filter not in diskutils.filters:
        diskutils.addFilter(_scratch_filter)


@atexit.register
def _remove_scratch_dirs() -> None:
    for scratch in list(_scratch_dirs):
        remove_scratch(scratch)


__all__ = ["LocalDaskCluster", "local_cluster_options", "make_scratch", "remove_scratch", "temporary_security"]
