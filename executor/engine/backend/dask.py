"""The dask backend: the engine's asynchronous ``distributed.Client``.

An engine gets one :class:`DaskBackend`; it hands DaskJobs a client on the engine's loop:

* by default a ``distributed.LocalCluster`` is started lazily, on the first
  DaskJob: one single-threaded worker process per core, quiet logs, the
  dashboard on a free loopback port, TLS with
  temporary certificates (only this process holds them), scratch space in a private temporary directory (nothing is
  written to the working directory), closed by ``engine.stop()``;
* ``engine.dask_client = Client(address, asynchronous=True)`` points the
  engine at a running cluster instead. The user's client is used as is when
  it belongs to the engine's loop; a client made on another loop (the engine
  runs its own loop in a thread in sync use) is only read for its address and
  the backend connects its own client there. A synchronous client is refused.
* ``engine.dask_client = "tcp://host:port"`` does the same from sync code,
  where ``distributed`` cannot make an asynchronous client outside a running
  loop: the backend connects its own client to that address on first use.

``distributed`` is imported lazily: the engine works without dask installed.

The module is also the one dask layer of the repository: the pytest plugin's
``dask`` backend starts and connects its clusters through
:func:`local_cluster_options`, :class:`LocalDaskCluster`, :func:`connect_client`
and :func:`close_client_quietly`, so both products start clusters the same
secure way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import typing as T

from ..log import logger
from ._dask_imports import check_tls_support
from ._dask_imports import import_distributed as _import_distributed
from ._dask_local import LocalDaskCluster, local_cluster_options, make_scratch, remove_scratch

if T.TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = [
    "DaskBackend",
    "LocalDaskCluster",
    "check_async_client",
    "check_scheduler_address",
    "check_tls_support",
    "close_client_quietly",
    "close_soon",
    "connect_client",
    "local_cluster_options",
]

#: Seconds to wait for a cluster to answer before a DaskJob fails with a clear error.
CONNECT_TIMEOUT = 10.0


class NotADaskClientError(ValueError, AttributeError):
    """``engine.dask_client`` was given something that is neither a client nor an address.

    An AttributeError as upstream's (it reads ``client.asynchronous``), and a
    ValueError as ours always was.
    """


def check_async_client(client: object) -> "Client":
    """Return ``client`` if it is an asynchronous ``distributed.Client``, else raise ``ValueError``."""
    distributed = _import_distributed()
    if not isinstance(client, distributed.Client):
        raise NotADaskClientError(
            "dask_client must be a distributed.Client created with asynchronous=True, or a scheduler "
            f"address such as 'tcp://127.0.0.1:8786', got {type(client).__name__}"
        )
    # `client.asynchronous` is only true inside the client's own loop: read how it was made
    if not getattr(client, "_asynchronous", client.asynchronous):
        raise ValueError(
            "dask_client must be an asynchronous client: create it with "
            "Client(address, asynchronous=True) (the engine awaits it on its own event loop), "
            "or set the scheduler's address, e.g. engine.dask_client = 'tcp://127.0.0.1:8786'"
        )
    return client


def check_scheduler_address(address: str) -> str:
    """Return ``address`` if it looks like a dask scheduler address (``[proto://]host:port``), else raise."""
    _, _, location = address.rpartition("://")
    host, _, port = location.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"dask_client {address!r} is not a scheduler address: give 'tcp://host:port' "
            "(or an asynchronous distributed.Client)"
        )
    return address


def connect_client(address: str, timeout: float = CONNECT_TIMEOUT, security: T.Any = None) -> "Client":
    """A synchronous client of the scheduler at ``address``; ``ConnectionError`` if it does not answer in time.

    ``security`` defaults to dask's configuration (``distributed.comm.tls.*``),
    as for any ``Client``: a ``tls://`` address works with the certificates the
    user configured for dask.
    """
    distributed = _import_distributed()
    try:
        return T.cast(
            "Client", distributed.Client(address, timeout=timeout, security=security, set_as_default=False)
        )
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"cannot reach the dask scheduler at {address} within {timeout:g} s ({error})") from None
    except Exception as error:  # e.g. a tls:// address without TLS settings: distributed raises TypeError
        raise ConnectionError(f"cannot connect to the dask scheduler at {address}: {error}") from None


def close_client_quietly(client: T.Any, timeout: float = 10.0, scheduler_gone: bool = False) -> None:
    """Close a synchronous client; a scheduler that is gone already is no error.

    With ``scheduler_gone``, distributed's own logs are muted meanwhile: the
    client is still trying to reconnect, and closing cancels that attempt,
    which distributed would log as an error with a traceback (the run has
    said what happened already).
    """
    # distributed's modules log through loggers of their own, some with their own level
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "distributed"]
    muted = {name: logging.getLogger(name).level for name in names} if scheduler_gone else {}
    for name in muted:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        client.close(timeout=timeout)
    except Exception as error:  # closing is best effort
        logger.debug("closing a dask client: {!r}", error)
    finally:
        if getattr(client, "status", "closed") != "closed":
            # A close that timed out leaves the client "closing": its __del__ would close it again
            # at exit, on a loop stopped by then (with the cluster's), and print "IOLoop is closed".
            # Its connections go with the loop and the cluster anyway.
            client.status = "closed"
        for name, level in muted.items():
            logging.getLogger(name).setLevel(level)


def _client_address(client: "Client") -> str | None:
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    if address:
        return str(address)
    start_arg = getattr(client, "_start_arg", None)
    return start_arg if isinstance(start_arg, str) else None


def _client_loop(client: "Client") -> asyncio.AbstractEventLoop | None:
    loop = getattr(client, "loop", None)
    return getattr(loop, "asyncio_loop", None)


class DaskBackend:
    """Owns (or borrows) the dask client that the engine's DaskJobs run on."""

    def __init__(self, n_workers: int | None = None, threads_per_worker: int = 1) -> None:
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self._user_client: Client | None = None
        self._user_address: str | None = None
        self._client: Client | None = None
        self._owned_client = False
        self._cluster: LocalCluster | None = None
        #: the address the owned client was connected to for ``_user_address``
        self._connected_to: str | None = None
        self._scratch: str | None = None
        self._starting: asyncio.Lock | None = None
        #: the connection or cluster start under way; owned by the backend so that cancelling
        #: the DaskJob that asked for it does not abandon a half-started cluster
        self._start_task: asyncio.Task[Client] | None = None

    @property
    def client(self) -> "Client | None":
        """The client set by the user, else the one in use (``None`` before the first DaskJob)."""
        return self._user_client if self._user_client is not None else self._client

    @property
    def cluster(self) -> "LocalCluster | None":
        """The LocalCluster this backend started, if any."""
        return self._cluster

    def set_client(self, client: "Client | str | None") -> None:
        """Use ``client``'s cluster, or the scheduler at address ``client``, from now on.

        ``None`` goes back to a lazily started LocalCluster. The previously
        used client and cluster are closed by :meth:`close`, or at the next
        :meth:`get_client`.
        """
        if isinstance(client, str):
            self._user_client, self._user_address = None, check_scheduler_address(client)
        else:
            self._user_client = None if client is None else check_async_client(client)
            self._user_address = None

    async def get_client(self) -> "Client":
        """The client to submit to, connecting or starting a cluster on first use."""
        if self._client is not None and self._is_current(self._client):
            return self._client  # the common case: no lock to take
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._client is not None and self._is_current(self._client):
                return self._client
            if self._start_task is None or self._start_task.done():
                await self._release()
                self._start_task = asyncio.ensure_future(self._connect_or_start())
            start = self._start_task
        # shielded: a cancelled job stops waiting, the start goes on for the next job (or close())
        return await asyncio.shield(start)

    async def _connect_or_start(self) -> "Client":
        if self._user_address is not None:
            self._client = await self._connect(self._user_address)
            self._owned_client, self._connected_to = True, self._user_address
        elif self._user_client is not None:
            self._client = await self._adopt(self._user_client)
        else:
            self._client = await self._start_local_cluster()
        return self._client

    def _is_current(self, client: "Client") -> bool:
        if client.status not in ("running", "connecting", "newly-created"):
            return False
        if self._user_address is not None:
            return self._owned_client and self._connected_to == self._user_address
        if self._user_client is None:
            return self._owned_client and self._cluster is not None
        return client is self._user_client or (
            self._owned_client and _client_address(client) == _client_address(self._user_client)
        )

    async def _adopt(self, client: "Client") -> "Client":
        loop = asyncio.get_running_loop()
        if _client_loop(client) in (None, loop):
            self._owned_client = False
            if client.status == "newly-created":
                await asyncio.wait_for(client, CONNECT_TIMEOUT)
            return client
        address = _client_address(client)
        if address is None:
            raise ValueError(
                "dask_client was made on another event loop and has no scheduler address; "
                "create it as Client('tcp://host:port', asynchronous=True)"
            )
        logger.debug("dask client belongs to another loop; connecting the engine's own to {}", address)
        own = await self._connect(address)
        self._owned_client = True
        return own

    async def _connect(self, address: str) -> "Client":
        distributed = _import_distributed()
        try:
            return await asyncio.wait_for(
                distributed.Client(address, asynchronous=True, timeout=CONNECT_TIMEOUT),
                CONNECT_TIMEOUT + 1,
            )
        except (OSError, asyncio.TimeoutError) as error:
            raise ConnectionError(f"cannot reach the dask scheduler at {address}: {error}") from error

    async def _start_local_cluster(self) -> "Client":
        distributed = _import_distributed()
        check_tls_support()
        import dask

        n_workers = self.n_workers or os.cpu_count() or 1
        self._scratch = make_scratch()
        logger.info("starting a dask LocalCluster with {} worker process(es)", n_workers)
        # A worker lost mid-task fails the task at once (KilledWorker): the job's
        # own `retries` decide what happens next, not the scheduler's.
        # The client starts the cluster itself, hence owns it: ``await engine.dask_client.close()``
        # (upstream's way to release dask) closes the cluster too, not only the connection.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0, "temporary-directory": self._scratch}):
            # a failed task is the job's failure, reported by the engine: dask's own
            # "Compute Failed" error log would say it twice (hence CRITICAL)
            options = local_cluster_options(n_workers, self.threads_per_worker, self._scratch, logging.CRITICAL)
            client = await distributed.Client(asynchronous=True, **options)
        self._cluster = client.cluster
        self._owned_client = True
        return T.cast("Client", client)

    async def _release(self) -> None:
        client, cluster, scratch = self._client, self._cluster, self._scratch
        owned = self._owned_client
        self._client, self._cluster, self._scratch, self._owned_client = None, None, None, False
        self._connected_to = None
        if client is not None and owned:
            await _quietly(client.close())
        if cluster is not None:
            closing = cluster.close()
            if closing is not None:
                await _quietly(closing)
        if scratch is not None:
            remove_scratch(scratch)

    async def close(self) -> None:
        """Close what this backend started (its client, its LocalCluster); a user's client stays open.

        A start still under way is let finish first: cancelling it half-way would
        leave a scheduler behind that nothing closes.
        """
        start, self._start_task = self._start_task, None
        if start is not None and not start.done():
            await asyncio.wait({start})
        if start is not None and start.done() and not start.cancelled():
            start.exception()  # retrieved: a failed start was reported to its jobs already
        await self._release()


_closing: set["asyncio.Task[None]"] = set()
"""Closes started by :func:`close_soon`, referenced until they end."""


def close_soon(backend: DaskBackend, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``backend`` on ``loop`` without awaiting it (a sync ``stop()`` inside a running loop).

    Once started, the close goes on even if the task is cancelled (``asyncio.run``
    cancels every task when its main coroutine returns).  A loop that ends
    before the task ever ran leaves the cluster to the client, which closes it
    at exit; ``async with Engine()`` awaits the close instead.
    """
    task = loop.create_task(_close_despite_cancel(backend))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close_despite_cancel(backend: DaskBackend) -> None:
    closing = asyncio.ensure_future(backend.close())
    while not closing.done():
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            continue  # the loop is ending: finish closing first
    if not closing.cancelled():
        closing.exception()  # retrieved: closing is best effort


async def _quietly(awaitable: T.Awaitable[T.Any]) -> None:
    try:
        await asyncio.wait_for(awaitable, 20)
    except Exception as error:  # closing is best effort: never fail engine.stop()
        logger.debug("closing dask resources: {!r}", error)
