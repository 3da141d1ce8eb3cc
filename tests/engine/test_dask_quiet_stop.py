"""The engine's own LocalCluster: stopping the engine prints nothing and leaves no scratch folder.

Each case is a real script in a subprocess, with its own TMPDIR, so that its
whole output and everything it leaves in the temporary directory can be seen.
It prints ``STOPPING`` to stderr right before it stops the engine: nothing may
follow on either stream.  ``await engine.dask_client.close()`` (upstream's way
to close the client) works on the engine's own client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _engine_helpers import left_in_temp

pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(180)

SYNC_WITH_BLOCK = """
import sys
from executor.engine import DaskJob, Engine

def inc(x):
    return x + 1

if __name__ == "__main__":
    with Engine() as engine:
        jobs = [DaskJob(inc, args=(i,)) for i in range(3)]
        engine.submit(*jobs)
        engine.wait(timeout=100)
        print([j.result() for j in jobs], flush=True)
        print("STOPPING", file=sys.stderr, flush=True)
"""

ASYNC_CLIENT_CLOSE = """
import asyncio
import sys
from executor.engine import DaskJob, Engine

def inc(x):
    return x + 1

async def main():
    engine = Engine()
    job = DaskJob(inc, args=(1,))
    await engine.submit_async(job)
    await engine.join(timeout=100)
    await engine.dask_client.close()
    print(job.result(), engine.dask_client.status, flush=True)
    print("STOPPING", file=sys.stderr, flush=True)
    engine.stop()

if __name__ == "__main__":
    asyncio.run(main())
"""


def run_script(tmp_path: Path, source: str) -> tuple[list[str], str, list[str]]:
    """Run ``source`` with a private TMPDIR; return stdout lines, stderr after STOPPING, temp dir entries."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    script = tmp_path / "script.py"
    script.write_text(source)
    done = subprocess.run([sys.executable, "-X", "dev", str(script)], cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    assert "STOPPING\n" in done.stderr, done.stderr
    after_stop = done.stderr.split("STOPPING\n", 1)[1]
    return done.stdout.splitlines(), after_stop, [p.name for p in left_in_temp(temp)]


def test_sync_stop_of_the_engines_local_cluster_is_silent_and_clean(tmp_path: Path) -> None:
    out, after_stop, left = run_script(tmp_path, SYNC_WITH_BLOCK)
    assert out == ["[1, 2, 3]"]
    assert after_stop == ""
    assert left == []


def test_closing_the_engines_client_the_upstream_way_then_stopping_is_silent_and_clean(tmp_path: Path) -> None:
    out, after_stop, left = run_script(tmp_path, ASYNC_CLIENT_CLOSE)
    assert out == ["2 closed"]
    assert after_stop == ""
    assert left == []
