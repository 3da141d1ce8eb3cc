"""The LocalCluster the engine starts: TLS with temporary certificates, dashboard on loopback only."""

from __future__ import annotations

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
        with pytest.raises(Exception):  # no certificate: the handshake is refused
            distributed.Client(address, timeout=3, set_as_default=False)
        plain = address.replace("tls://", "tcp://")
        with pytest.raises(Exception):  # a plain TCP client gets no scheduler either
            distributed.Client(plain, timeout=3, set_as_default=False)
