"""Hostile local peers: nothing is unpickled before the token is checked, and nothing crashes the run.

Real sockets, real runs: a hostile client connects to the xdist rendezvous
with malformed hellos, wrong tokens and a pickle that would leave a file
behind if it were ever loaded; the dask backend has no listener at all.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from pathlib import Path

import pytest

from pytest_executor.backends._protocol import encode
from pytest_executor.xdist._link import Rendezvous, connect

pytestmark = pytest.mark.timeout(180)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:cacheprovider
"""


class _Planted:
    """Unpickling this creates a directory: proof that a peer's bytes were loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def _payload(proof: Path) -> bytes:
    return encode("hello", {"worker": "gw0", "token": _Planted(str(proof))})


def _hostile_lines(proof: Path) -> list[bytes]:
    """Every kind of bad first bytes a peer can send, each followed by the pickle."""
    bad = [
        b"PYTEST-EXECUTOR \xff session d0\n",  # not ASCII
        b"PYTEST-EXECUTOR " + b"a" * 400 + b"\n",  # too long
        b"NOT-US deadbeef xdist gw0\n",  # wrong prefix
        b"PYTEST-EXECUTOR 00000000000000000000000000000000 xdist gw0\n",  # wrong token
        b"PYTEST-EXECUTOR 0 1 2 3 4 5\n",  # wrong shape
        b"",  # the pickle alone
    ]
    return [line + _payload(proof) for line in bad]


def _connect_and_send(address: tuple[str, int] | str, data: bytes) -> socket.socket:
    """Connect and send ``data``; the socket stays open (the rendezvous reads it in ``link()``)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address)
    sock.sendall(data)
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_rendezvous_rejects_hostile_peers_before_unpickling(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "tcp":
        monkeypatch.delattr(socket, "AF_UNIX")  # the last-resort fallback, as on a system without them
    proof = tmp_path / "unpickled"
    rendezvous = Rendezvous()
    try:
        kind, _, rest = rendezvous.address.partition(":")
        assert kind == transport
        target: tuple[str, int] | str = rest if kind == "unix" else (rest.rpartition(":")[0], int(rest.rpartition(":")[2]))
        hostile = [_connect_and_send(target, data) for data in _hostile_lines(proof)]
        worker = threading.Thread(target=lambda: connect(rendezvous.address, rendezvous.token, "gw0"))
        worker.start()
        channel = rendezvous.link("gw0")
        worker.join(timeout=30)
        assert channel is rendezvous.links["gw0"]
        assert not proof.exists()
        for sock in hostile:
            assert _closed_by_peer(sock)
            sock.close()
    finally:
        rendezvous.close()
    assert not Path(rendezvous.directory).exists()


def test_rendezvous_directory_is_private_and_the_only_one(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob("pxe-*"))
    rendezvous = Rendezvous()
    try:
        assert os.stat(rendezvous.directory).st_mode & 0o777 == 0o700
        assert rendezvous.address.startswith(f"unix:{rendezvous.directory}")
        assert set(Path("/tmp").glob("pxe-*")) <= before  # the short dir only when the path is too long
    finally:
        rendezvous.close()


def test_long_tmpdir_uses_a_short_private_unix_socket_dir(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a TMPDIR too long for a Unix socket, the link still avoids TCP and cleans up."""
    pytest.importorskip("xdist")
    long_tmp = tmp_path / ("x" * 60) / ("y" * 60)
    long_tmp.mkdir(parents=True)
    pytester.makeini(INNER_INI)
    pytester.makepyfile(
        test_link="""
        import pytest

        def test_first():
            pass

        @pytest.mark.job(after="test_first")
        def test_second(request):
            address = request.config.workerinput["pytest_executor"]["address"]
            assert address.startswith("unix:/tmp/pxe-"), address
        """
    )
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    before = {p.name for p in Path("/tmp").glob("pxe-*")}
    result = pytester.runpytest_subprocess("-n", "2", "-rA")
    result.assert_outcomes(passed=2)
    assert {p.name for p in Path("/tmp").glob("pxe-*")} <= before
    assert list(long_tmp.glob("pytest-executor-xdist-*")) == []


LOOPBACK_SUITE = """
import psutil


def test_everything_listens_on_loopback_only():
    # this session -> its pool's zygote -> its dask worker -> the nanny -> the controller (the LocalCluster's scheduler)
    controller = next(p for p in psutil.Process().parents() if "--executor-backend=dask" in " ".join(p.cmdline()))
    listening = [c for p in [controller, *controller.children(recursive=True)]
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening), listening
"""


def test_the_cluster_started_for_a_dask_run_listens_on_loopback_only(pytester: pytest.Pytester) -> None:
    """Scheduler, workers, nannies and dashboard of the run's LocalCluster bind 127.0.0.1.

    Sessions reach the controller through dask's comms only, so the plugin has
    no listener of its own left to attack (the no-listener check with a
    separate scheduler is in ``test_dask_cluster.py``).
    """
    pytest.importorskip("distributed")
    pytester.makeini(INNER_INI + "    -p no:xdist -p no:rerunfailures\n")
    pytester.makepyfile(test_listen=LOOPBACK_SUITE)
    result = pytester.runpytest_subprocess("--executor-backend=dask", "--executor-workers=1", "-rA")
    result.stdout.fnmatch_lines(["PASSED test_listen.py::test_everything_listens_on_loopback_only"])
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("backend", ["local", "process"])
def test_a_run_leaves_nothing_in_the_temp_dir(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Not even the engine's (empty) default cache root: no test job needs a cache dir."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    pytester.makepyfile(test_some="def test_a():\n    pass\n\ndef test_b(tmp_path):\n    assert tmp_path.is_dir()\n")
    monkeypatch.setenv("TMPDIR", str(temp))
    result = pytester.runpytest_subprocess(f"--executor-backend={backend}", "--executor-workers=2", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    assert sorted(p.name for p in temp.iterdir() if not p.name.startswith("pytest-of-")) == []
