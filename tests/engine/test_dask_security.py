"""The LocalCluster the engine starts: TLS with temporary certificates, dashboard on loopback only."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import urlparse

import pytest

distributed = pytest.importorskip("distributed")

from executor.engine import Engine, EngineSetting  # noqa: E402
from executor.engine.job import DaskJob  # noqa: E402

from _engine_helpers import add  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def test_engine_cluster_is_tls_and_refuses_a_client_without_its_certificates(tmp_path: Path) -> None:
    with Engine(EngineSetting(max_dask_jobs=1, cache_path=str(tmp_path))) as engine:
        job = DaskJob(add, args=(1, 2))
        engine.submit(job)
        engine.wait_job(job, timeout=120)
        assert job.result() == 3
        cluster = engine.dask_backend.cluster
        client = engine.dask_client
        address = str(client.scheduler.address)
        assert address.startswith("tls://127.0.0.1:"), address
        assert cluster is not None
        if cluster.dashboard_link:  # only with bokeh installed
            assert urlparse(cluster.dashboard_link).hostname == "127.0.0.1"
        assert asyncio.run(_refused(address, ssl_context=_tls_without_certificate()))
        assert asyncio.run(_refused(address.replace("tls://", "tcp://")))  # plain TCP gets no scheduler


def _tls_without_certificate() -> ssl.SSLContext:
    """A TLS client context that trusts any server but shows no certificate of its own."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _refused(address: str, **connection_args: object) -> bool:
    """Whether distributed's own comm layer fails to open a connection to ``address``.

    A comm, not a ``Client``: a Client whose constructor failed is closed by its
    ``__del__`` whenever the garbage collector runs, and that can deadlock on
    the lock of its loop runner.
    """
    try:
        comm = await distributed.comm.connect(address, timeout=3, **connection_args)
    except Exception:  # the handshake is refused, or never completes
        return True
    await comm.close()
    return False


def test_the_plugins_local_cluster_is_tls_with_an_ec_key_and_refuses_a_client_without_it() -> None:
    """LocalDaskCluster (the pytest plugin's run cluster) uses temporary_security: same guarantees, faster key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from executor.engine.backend.dask import LocalDaskCluster

    cluster = LocalDaskCluster(1)
    try:
        address = str(cluster.cluster.scheduler_address)
        assert address.startswith("tls://127.0.0.1:"), address
        security = cluster.security
        assert security.require_encryption
        certificate = x509.load_pem_x509_certificate(security.tls_ca_file.encode())
        assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
        with cluster.client() as client:  # the cluster's own credentials get in
            assert client.submit(add, 1, 2).result(timeout=60) == 3
        assert asyncio.run(_refused(address, ssl_context=_tls_without_certificate()))
        assert asyncio.run(_refused(address.replace("tls://", "tcp://")))
    finally:
        cluster.close()
