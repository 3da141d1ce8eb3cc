"""Settings shared by the whole test suite."""

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.foreign_plugins import OFF as FOREIGN_PLUGINS_OFF

# Hypothesis keeps its example database and caches under the system's temporary
# directory, not in the working directory: the suite leaves nothing behind.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "pytest-executor-hypothesis"))
settings.register_profile("pytest-executor", database=None)
settings.load_profile("pytest-executor")

# dask imports the importlib_metadata backport, which adds its own distribution
# finder to sys.meta_path and deletes the standard one.  Imported first inside a
# test that uses pytester, pytester's restore of sys.meta_path then drops the
# backport's finder too: no distribution is found any more, and every later
# in-process run loads no plugin ("unrecognized arguments: --executor-...").
with contextlib.suppress(ImportError):
    import importlib_metadata  # noqa: F401


ASYNCIO_SCOPE_UNSET = 'ignore:The configuration option "asyncio_default_fixture_loop_scope" is unset'


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, without pytest-asyncio's "loop scope unset" warning in the inner sessions.

    The inner sessions run in a bare temporary rootdir, without this project's
    ini, where pytest-asyncio would warn once per session that the setting is
    unset (the demo suite's ini ignores it the same way). pytester clears
    PYTEST_ADDOPTS when it starts, hence set here; so are the foreign plugins
    of :mod:`tests.foreign_plugins` switched off, and, when this suite runs
    under ``-n``, pytest-xdist's worker variables dropped.
    """
    # a warning filter, not the ini key: sessions run with -p no:asyncio would call the key unknown
    monkeypatch.setenv("PYTEST_ADDOPTS", f"-W '{ASYNCIO_SCOPE_UNSET}' {FOREIGN_PLUGINS_OFF}")
    # this suite run by pytest-xdist (-n): the inner sessions are no xdist workers of it
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    return pytester


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """One 2-worker LocalCluster for the whole session (clusters are slow to start), dashboard on loopback."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()
