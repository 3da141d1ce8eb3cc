"""Parent death: when the engine's process is SIGKILLed, nothing its process pool started survives.

Not only the zygote and the workers (tests/engine/test_process_pool.py) but
what the jobs started: a child in the worker's process group and a detached
one (its own session; the worker is its subreaper).  The zygote hears of the
engine's death by ``PR_SET_PDEATHSIG`` (:mod:`executor._lifeline`), kills
every worker's process group and sends SIGTERM to what left it before it exits
(a SubprocessJob's watchdog ignores that and cleans up on its own:
tests/engine/test_extend_crash.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from _engine_helpers import wait_for_file

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENT_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, threading
    from pathlib import Path
    from executor.engine import Engine, EngineSetting, ProcessJob

    out = Path(sys.argv[1])
    fork_zygote = sys.argv[2] == "forked"

    def start_children(path):
        grouped = subprocess.Popen(["sleep", "600"])  # in the worker's process group
        detached = subprocess.Popen(["sleep", "601"], start_new_session=True)  # escapes the group
        # written then renamed: the test reads the file as soon as it exists
        Path(path + ".tmp").write_text(f"{os.getpid()} {grouped.pid} {detached.pid}")
        os.rename(path + ".tmp", path)
        threading.Event().wait()  # busy until killed

    with Engine(EngineSetting(max_process_jobs=2, fork_zygote=fork_zygote)) as engine:
        engine.submit(ProcessJob(start_children, args=(str(out / "w1"),)),
                      ProcessJob(start_children, args=(str(out / "w2"),)))
        threading.Event().wait()  # until killed
""")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["forked", "python-c"])
def test_a_sigkilled_engine_leaves_no_worker_nor_what_its_jobs_started(tmp_path: Path, kind: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), kind], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    procs: list[psutil.Process] = []
    try:
        for name in ("w1", "w2"):
            procs += [psutil.Process(int(p)) for p in wait_for_file(str(tmp_path / name), timeout=60).split()]
        zygote = procs[0].ppid()
        procs.append(psutil.Process(zygote))
        assert len({p.pid for p in procs}) == 7 and all(p.is_running() for p in procs)
        parent.kill()
        parent.wait(timeout=30)
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert alive == [], [(p.pid, p.cmdline()) for p in alive]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for p in procs:  # only if the test failed: leave nothing behind
            try:
                p.kill()
            except psutil.Error:
                pass
