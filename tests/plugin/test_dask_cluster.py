"""The dask backend on a real cluster: ``dask scheduler`` / ``dask worker`` processes, nothing shared but the network.

Scheduler and workers each run in a temporary working directory of their own
(workers with ``--local-directory`` there too); the suite runs from a third
one.  Sessions reach the controller only through dask, run from the copy of
the suite shipped to their worker, follow the cluster as workers join, are
retired or are killed, and the run ends cleanly when the scheduler goes.
One scheduler serves the module; each test starts the workers it needs.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from _processes import alive, wait_for

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(180)

INNER_INI = """
[pytest]
addopts = -p no:hypothesispytest -p no:anyio -p no:asyncio -p no:cacheprovider -p no:timeout
          -p no:benchmark -p no:dependency -p no:pytest_order -p no:rerunfailures -p no:xdist
"""

DASK_CLI = str(Path(sys.executable).with_name("dask"))
DASK = [DASK_CLI, "scheduler"]
WORKER = [DASK_CLI, "worker"]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DASK_"))}


class Cluster:
    """A scheduler process and the worker processes started against it."""

    def __init__(self, root: Path, tls: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.tls = tls or []
        self.env = env or _env()
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started = 0
        home = root / "scheduler"
        home.mkdir(parents=True)
        info = home / "scheduler.json"
        protocol = ["--protocol", "tls"] if self.tls else []
        self.scheduler = subprocess.Popen(
            [*DASK, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info),
             *protocol, *self.tls],
            cwd=home, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: info.exists() and info.stat().st_size, "the scheduler file", timeout=60)
        wait_for(lambda: json.loads(info.read_text()).get("address"), "the scheduler address", timeout=10)
        self.address: str = json.loads(info.read_text())["address"]

    def add_worker(self, wait: bool = True, env: dict[str, str] | None = None, nworkers: int = 1) -> subprocess.Popen[bytes]:
        """Start ``nworkers`` single-threaded workers (each with its nanny) sharing a directory of their own."""
        home = self.root / f"worker-{self.started}"
        self.started += 1
        home.mkdir()
        before = self.worker_count() if wait else 0
        proc = subprocess.Popen(
            [*WORKER, self.address, "--nthreads", "1", "--nworkers", str(nworkers), "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", str(home), *self.tls],
            cwd=home, env=env or self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.workers.append(proc)
        if wait:
            wait_for(lambda: self.worker_count() >= before + nworkers, "the workers to join", timeout=60)
        return proc

    def client(self) -> distributed.Client:
        security = None
        if self.tls:
            ca, cert, key = (self.tls[i + 1] for i in range(0, 6, 2))
            security = distributed.security.Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                                                     require_encryption=True)
        return distributed.Client(self.address, security=security, timeout=10, set_as_default=False)

    def worker_count(self) -> int:
        with self.client() as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        self.scheduler.terminate()
        try:
            self.scheduler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.scheduler.kill()
            self.scheduler.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler for the module; every test adds (and stops) its own workers."""
    started = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def workers(cluster: Cluster) -> Iterator[Callable[[int], None]]:
    def add(count: int) -> None:
        for _ in range(count):
            cluster.add_worker()

    try:
        yield add
    finally:
        cluster.stop_workers()


def _suite(tmp_path: Path, files: dict[str, str], **pointers: Path | str) -> Path:
    """Write the suite in a directory of its own; ``pointers`` become small files the suite reads."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INNER_INI)
    for name, text in files.items():
        (suite / name).write_text(text)
    for name, value in pointers.items():
        (suite / f"{name}.txt").write_text(str(value))
    return suite


def _spawn(suite: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    scratch = tmp_path / "controller-tmp"
    scratch.mkdir(exist_ok=True)
    environment = {**(env or _env()), "TMPDIR": str(scratch)}
    return subprocess.Popen([sys.executable, "-m", "pytest", "--executor-backend=dask", *args], cwd=suite,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 150) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"the run did not end within {timeout} s:\n{output}") from None
    return output


def _left_behind(cluster: Cluster) -> list[str]:
    """Copies of the suite or session processes (and their pools' zygotes) still on the workers."""
    copies = [str(p) for p in cluster.root.glob("worker-*/dask-scratch-space/pytest-executor-*")]
    sessions = []
    for proc in cluster.workers:
        try:
            with_children = psutil.Process(proc.pid).children(recursive=True) if alive(proc.pid) else []
        except psutil.Error:  # the worker ended meanwhile
            continue
        for child in with_children:
            try:
                command = child.cmdline()
            except psutil.Error:  # a session that ended meanwhile (gone, or a zombie not yet reaped) is not left
                continue
            # a session is a worker of its host's engine pool: it and the pool's zygote run zygote_main
            if any("zygote_main" in part for part in command):
                sessions.append(" ".join(command[:3]))
    return copies + sessions


def _wait_nothing_left(cluster: Cluster, timeout: float = 30.0) -> None:
    """Wait until :func:`_left_behind` is empty; fail with what is still there."""
    left: list[str] = []

    def gone() -> bool:
        left[:] = _left_behind(cluster)
        return not left

    try:
        wait_for(gone, "the copies and sessions to go", timeout=timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}: {left}") from None


HOME_SUITE = """
import os
from pathlib import Path

HERE = Path(__file__).parent
RECORD = Path((HERE / "record.txt").read_text())


def wait_for(path):
    import time
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_where_am_i():
    (RECORD / "file.txt").write_text(__file__)
    (RECORD / "started").write_text(os.environ["PYTEST_EXECUTOR_DASK_WORKER"])
    wait_for(RECORD / "checked")


def test_fails():
    print("printed on the cluster")
    assert 0
"""


def test_a_suite_runs_from_the_workers_copy_and_the_controller_listens_on_nothing(
    cluster: Cluster, workers: Callable[[int], None], tmp_path: Path
) -> None:
    workers(2)
    record = tmp_path / "record"
    record.mkdir()
    suite = _suite(tmp_path, {"test_home.py": HOME_SUITE}, record=record)
    os.utime(suite / "record.txt", (0, 0))  # dated 1970, as files of sdists often are: zip needs care
    proc = _spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}", "-rA")
    try:
        wait_for(lambda: (record / "started").exists() or proc.poll() is not None, "the first test", timeout=90)
        assert proc.poll() is None, _finish(proc)
        controller = psutil.Process(proc.pid)
        listening = [c for c in controller.net_connections(kind="all") if c.status == psutil.CONN_LISTEN]
        assert listening == [], listening
        assert controller.children(recursive=True) == []  # nothing of ours runs beside the controller
    finally:
        (record / "checked").write_text("")
    output = _finish(proc)
    assert proc.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    assert "printed on the cluster" in output
    ran_from = Path((record / "file.txt").read_text())
    assert cluster.root in ran_from.parents and suite not in ran_from.parents, ran_from
    assert ran_from.name == "test_home.py" and "dask-scratch-space" in ran_from.parts
    # failures point at the controller's files, not at the copy
    assert f"{suite.name}/test_home.py" not in output or "dask-scratch-space" not in output, output
    _wait_nothing_left(cluster)
    # the controller's temp dir holds only the per-user folders kept on purpose: pytest's
    # numbered basetemps and the engine's default cache folder
    kept = {f"pytest-of-{getpass.getuser()}", f"executor-engine-{os.getuid()}"}
    assert {p.name for p in (tmp_path / "controller-tmp").iterdir()} <= kept


JOIN_SUITE = """
import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RECORD = Path((HERE / "record.txt").read_text())


def test_blocks_the_only_worker():
    import time
    (RECORD / "blocking").write_text(os.environ["PYTEST_EXECUTOR_DASK_WORKER"])
    deadline = time.monotonic() + 90
    while not list(RECORD.glob("other-*")):
        assert time.monotonic() < deadline, "no other session took work"
        time.sleep(0.02)


@pytest.mark.parametrize("n", range(4))
def test_other(n):
    (RECORD / f"other-{n}").write_text(os.environ["PYTEST_EXECUTOR_DASK_WORKER"])
"""


def test_a_worker_that_joins_mid_run_takes_work(cluster: Cluster, workers: Callable[[int], None], tmp_path: Path) -> None:
    workers(1)
    record = tmp_path / "record"
    record.mkdir()
    suite = _suite(tmp_path, {"test_join.py": JOIN_SUITE}, record=record)
    proc = _spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}")
    wait_for(lambda: (record / "blocking").exists() or proc.poll() is not None, "the blocking test", timeout=90)
    first = (record / "blocking").read_text() if (record / "blocking").exists() else ""
    cluster.add_worker(wait=False)
    output = _finish(proc)
    assert proc.returncode == 0, output
    assert "5 passed" in output
    ran_others = {path.read_text() for path in record.glob("other-*")}
    assert ran_others - {first}, (first, ran_others)  # the joiner ran some


RETIRE_SUITE = """
import os
import time
from pathlib import Path

import pytest
from distributed import Client

HERE = Path(__file__).parent
ADDRESS = (HERE / "address.txt").read_text()


def test_retire_the_other_worker():
    mine = os.environ["PYTEST_EXECUTOR_DASK_WORKER"]
    with Client(ADDRESS, set_as_default=False) as client:
        others = [w for w in client.scheduler_info(n_workers=-1)["workers"] if w != mine]
        assert others
        client.retire_workers(others, close_workers=True)


@pytest.mark.parametrize("n", range(12))
def test_work(n):
    time.sleep(0.1)
"""


def test_retiring_a_worker_mid_run_loses_no_test_and_reports_none_twice(
    cluster: Cluster, workers: Callable[[int], None], tmp_path: Path
) -> None:
    workers(2)
    suite = _suite(tmp_path, {"test_retire.py": RETIRE_SUITE}, address=cluster.address)
    report = tmp_path / "report.json"
    proc = _spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}", "-rA",
                  f"--executor-report={report}", "-p", "no:randomly")
    output = _finish(proc)
    assert proc.returncode == 0, output
    assert "13 passed" in output, output
    tests = [job["test"] for job in json.loads(report.read_text())["jobs"]]
    assert len(tests) == len(set(tests)) == 13
    assert sum(line.startswith("PASSED ") for line in output.splitlines()) == 13, output
    # the retired worker's nanny removed its copy as it closed, the others at the end of the run
    _wait_nothing_left(cluster)


SHARED_SUITE = """
import os
from pathlib import Path

from distributed import Client

HERE = Path(__file__).parent
ADDRESS = (HERE / "address.txt").read_text()
RECORD = Path((HERE / "record.txt").read_text())


def test_retire_the_worker_sharing_my_directory():
    mine = os.environ["PYTEST_EXECUTOR_DASK_WORKER"]
    (RECORD / "here.txt").write_text(str(HERE))
    copies = sorted(p.name for p in HERE.parent.glob("pytest-executor-*") if not p.name.endswith("-tmp"))
    (RECORD / "copies.txt").write_text("\\n".join(copies))
    with Client(ADDRESS, set_as_default=False) as client:
        others = [w for w in client.scheduler_info(n_workers=-1)["workers"] if w != mine]
        assert len(others) == 1
        client.retire_workers(others, close_workers=True)
    # the other nanny removed its own copy as it closed, not this one
    assert (HERE / "address.txt").read_text() == ADDRESS
    assert Path(__file__).read_text().startswith("\\nimport os")
"""


def test_nannies_sharing_a_local_directory_each_unpack_a_copy_of_their_own(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.add_worker(nworkers=2)  # one `dask worker --nworkers 2`: two nannies, one --local-directory
    try:
        record = tmp_path / "record"
        record.mkdir()
        suite = _suite(tmp_path, {"test_shared.py": SHARED_SUITE}, address=cluster.address, record=record)
        proc = _spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}", "-rA")
        output = _finish(proc)
        assert proc.returncode == 0, output
        assert "1 passed" in output, output
        copies = (record / "copies.txt").read_text().split("\n")
        assert len(copies) == 2 and len(set(copies)) == 2, copies  # one copy per nanny, both unpacked whole
        here = Path((record / "here.txt").read_text())
        assert here.name in copies and cluster.root in here.parents
        assert not list(here.parent.glob(".pytest-executor-*")), "a staging folder was left"
        _wait_nothing_left(cluster)
    finally:
        cluster.stop_workers()


KILL_SUITE = """
import os
import signal
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RECORD = Path((HERE / "record.txt").read_text())


def kill_my_dask_worker():
    print("output so far")
    time.sleep(1.0)  # margin for the host to forward the captured output (it looks every 0.1 s)
    # the session is a worker of its host's process pool, forked by the pool's zygote, a child of the dask worker
    with open(f"/proc/{os.getppid()}/stat") as stat:
        dask_worker = int(stat.read().rsplit(")", 1)[1].split()[1])
    os.kill(dask_worker, signal.SIGKILL)
    time.sleep(60)  # the session dies with its host (lifeline) long before


def test_victim():
    kill_my_dask_worker()


@pytest.mark.job(retries=1)
def test_victim_retried():
    marker = RECORD / "retried"
    if not marker.exists():
        marker.write_text("")
        kill_my_dask_worker()


@pytest.mark.parametrize("n", range(4))
def test_bystander(n):
    pass
"""


def test_a_killed_worker_fails_its_test_with_the_output_so_far_and_retries_apply(
    cluster: Cluster, workers: Callable[[int], None], tmp_path: Path
) -> None:
    workers(2)
    record = tmp_path / "record"
    record.mkdir()
    suite = _suite(tmp_path, {"test_kill.py": KILL_SUITE}, record=record)
    proc = _spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}", "-rA")
    output = _finish(proc)
    assert proc.returncode == 1, output
    assert "1 failed, 5 passed" in output, output
    assert "FAILED test_kill.py::test_victim" in output
    assert "PASSED test_kill.py::test_victim_retried" in output
    failure = output[output.index("_ test_victim _"):]
    assert "output so far" in failure and "was lost" in failure, failure


STOP_SUITE = """
import os
import signal
from pathlib import Path

HERE = Path(__file__).parent


def test_first():
    pass


def test_stops_the_scheduler():
    os.kill(int((HERE / "scheduler.txt").read_text()), signal.SIGKILL)


def test_after_1():
    pass


def test_after_2():
    pass
"""


def test_a_scheduler_that_goes_away_ends_the_run_with_an_error_for_every_test_left(tmp_path: Path) -> None:
    own = Cluster(tmp_path / "own")
    try:
        own.add_worker()
        suite = _suite(tmp_path, {"test_stop.py": STOP_SUITE}, scheduler=own.scheduler.pid)
        proc = _spawn(suite, tmp_path, f"--executor-dask-address={own.address}", "-rA")
        output = _finish(proc, timeout=120)
    finally:
        own.close()
    assert proc.returncode == 1, output
    assert "PASSED test_stop.py::test_first" in output, output
    for name in ("test_after_1", "test_after_2"):
        assert f"test_stop.py::{name}" in output
    assert output.count("went away") >= 2, output
    assert "Traceback" not in output, output
    summary = output.rstrip().splitlines()[-1]
    # the test that stopped the scheduler ran (it fails) or its result was lost (an error)
    assert "1 failed, 1 passed, 2 errors" in summary or "1 passed, 3 errors" in summary, output


def test_a_worker_with_another_pytest_executor_version_fails_the_run_at_start(
    cluster: Cluster, workers: Callable[[int], None], tmp_path: Path
) -> None:
    workers(1)
    # a worker whose environment says pytest-executor 9.9.9 (package metadata first on its path)
    fake = tmp_path / "fake-site"
    (fake / "pytest_executor-9.9.9.dist-info").mkdir(parents=True)
    (fake / "pytest_executor-9.9.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pytest-executor\nVersion: 9.9.9\n")
    with cluster.client() as client:
        before = set(client.scheduler_info(n_workers=-1)["workers"])
    cluster.add_worker(env={**cluster.env, "PYTHONPATH": str(fake)})
    with cluster.client() as client:
        (address,) = set(client.scheduler_info(n_workers=-1)["workers"]) - before
    suite = _suite(tmp_path, {"test_one.py": "def test_one():\n    pass\n"})
    output = _finish(_spawn(suite, tmp_path, f"--executor-dask-address={cluster.address}"))
    assert "every dask worker needs pytest-executor" in output, output
    assert f"{address}: pytest-executor 9.9.9" in output, output
    assert "1 passed" not in output
    _wait_nothing_left(cluster)


def _self_signed(directory: Path) -> list[str]:
    """A CA and a certificate for 127.0.0.1 signed by it, as dask's ``--tls-*`` options."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pytest-executor test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM),
             "cert.pem": cert.public_bytes(serialization.Encoding.PEM),
             "key.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())}
    for name, data in paths.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o600)
    return ["--tls-ca-file", str(directory / "ca.pem"), "--tls-cert", str(directory / "cert.pem"),
            "--tls-key", str(directory / "key.pem")]


def test_a_tls_cluster_with_the_users_certificates_from_dask_config(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    tls = _self_signed(certs)
    own = Cluster(tmp_path / "own", tls=tls)
    try:
        own.add_worker()
        assert own.address.startswith("tls://127.0.0.1:")
        suite = _suite(tmp_path, {"test_tls.py": "def test_one():\n    pass\n\ndef test_two():\n    pass\n"})
        env = {**_env(),
               "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs / "ca.pem"),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs / "cert.pem"),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs / "key.pem"),
               "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
        output = _finish(_spawn(suite, tmp_path, f"--executor-dask-address={own.address}", env=env))
        assert "2 passed" in output, output
        # without the certificates the same address is refused, within seconds
        refused = _finish(_spawn(suite, tmp_path, f"--executor-dask-address={own.address}"))
        assert "cannot reach the dask scheduler" in refused, refused
    finally:
        own.close()
