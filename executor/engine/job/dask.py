"""DaskJob: runs its function on a dask cluster through the engine's asynchronous client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import typing as T

from .base import GeneratorDriver, Job
from .utils import call_sync, is_generator_function

if T.TYPE_CHECKING:  # pragma: no cover
    from ..core import Engine

__all__ = ["DaskJob", "DaskWorkerLostError", "get_default_client"]

#: Seconds given to the scheduler to drop a cancelled task before the job moves on.
CANCEL_TIMEOUT = 5.0


def get_default_client() -> T.Any:
    """A new asynchronous ``distributed.Client`` on a new ``LocalCluster`` of this machine, as upstream.

    Call it inside a coroutine and await the client to start both
    (``client = await get_default_client()``); the caller owns them
    (``await client.close(); await client.cluster.close()``).  The engine
    does not need it: it starts its own cluster on the first DaskJob, or
    uses the client given to ``engine.dask_client``.
    """
    from distributed import Client, LocalCluster

    from executor.engine.backend._dask_imports import check_tls_support

    check_tls_support()

    # As the engine's own clusters: on loopback, TLS with temporary certificates (other
    # local users cannot submit to it), the dashboard on 127.0.0.1 only (":0" is every interface).
    cluster = LocalCluster(host="127.0.0.1", dashboard_address="127.0.0.1:0", security=True, asynchronous=True)
    return Client(cluster, asynchronous=True)


class DaskWorkerLostError(RuntimeError):
    """The dask worker running a job died (or the cluster went away) before returning a result."""


class DaskJob(Job):
    """A job run on a dask worker; limited by ``EngineSetting.max_dask_jobs``.

    The engine's dask backend supplies the cluster: a ``LocalCluster`` started
    on the first DaskJob, or the one ``engine.dask_client`` points at. The
    function, its arguments and its result travel with cloudpickle; coroutine
    functions are run to completion on the worker. A worker lost mid-job fails
    the attempt with :class:`DaskWorkerLostError` (``retries`` apply).
    Generator functions cannot be stepped on a dask worker: use a ThreadJob or
    a ProcessJob for them.
    """

    resource_kind = "dask"
    accepts_engine = False

    def prepare(self, engine: "Engine") -> None:
        """Refuse generator functions up front (a dask task returns one value)."""
        if is_generator_function(self.func):
            raise TypeError(
                f"DaskJob {self.name}: generator functions cannot run on a dask worker "
                "(a task returns one result); use ThreadJob or ProcessJob"
            )

    async def start_generator(
        self, func: T.Callable[..., T.Any], args: tuple, kwargs: dict
    ) -> GeneratorDriver:
        """Generators never reach here (see :meth:`prepare`); refuse rather than run them locally."""
        raise TypeError(f"DaskJob {self.name}: generator functions cannot run on a dask worker")

    async def run_function(self, func: T.Optional[T.Callable[..., T.Any]] = None, args: T.Optional[tuple] = None,
                           kwargs: T.Optional[dict] = None) -> T.Any:
        """Submit the call to the cluster and await its result; cancelling cancels the task."""
        func, args, kwargs = self._call_or_own(func, args, kwargs)
        from distributed.scheduler import KilledWorker

        assert self.engine is not None
        client = await self.engine.dask_backend.get_client()
        future = client.submit(call_sync, func, args, kwargs, key=f"{self.name}-{self.id}-{self.attempts}",
                               pure=False)
        try:
            return await future
        except asyncio.CancelledError:
            await _cancel_quietly(client, future)
            raise
        except KilledWorker as error:
            raise DaskWorkerLostError(
                f"the dask worker running job {self.name} ({self.id}) died before it finished: {error}"
            ) from error
        except OSError as error:  # distributed's CommClosedError: the scheduler connection broke
            raise DaskWorkerLostError(
                f"lost the dask scheduler while job {self.name} ({self.id}) ran: {error!r}"
            ) from error
        except concurrent.futures.CancelledError as error:
            # the scheduler dropped the task (cluster closed, scheduler restarted, client lost)
            raise DaskWorkerLostError(
                f"the dask cluster dropped job {self.name} ({self.id}) before it finished: {error!r}"
            ) from error


async def _cancel_quietly(client: T.Any, future: T.Any) -> None:
    try:
        await asyncio.wait_for(client.cancel([future], force=True), CANCEL_TIMEOUT)
    except Exception:  # the cluster may be gone already: nothing left to cancel
        pass
