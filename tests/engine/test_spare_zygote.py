"""A spare zygote in each process of a fork server that preloads ``_spare_preload`` (see ``executor.engine.backend._spare``).

Checked in a fresh interpreter with a real ``multiprocessing`` fork server:
its child adopts the spare for a process pool, whose worker then comes from
the spare (not from a ``python -c`` zygote), sees itself as a main process
that may start children, and the default start method of a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server and /proc: Linux")

SCRIPT = textwrap.dedent('''
    import asyncio, json, multiprocessing, os, sys

    def in_worker(spare_pid):
        import multiprocessing
        current = multiprocessing.current_process()
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=os._exit, args=(7,))
        child.start()  # a daemonic process could not: "daemonic processes are not allowed to have children"
        child.join(30)
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            zygote = f.read()
        return {"name": current.name, "daemon": current.daemon, "start_method": multiprocessing.get_start_method(True),
                "child_exit": child.exitcode, "python_c_zygote": b"zygote_main" in zygote,
                "zygote_is_spare": os.getppid() == spare_pid}

    def in_server_child(queue):
        try:
            queue.put(check_in_server_child())
        except BaseException as error:  # the test fails at once, with the reason
            queue.put({"error": repr(error)})

    def check_in_server_child():
        from executor.engine.backend._spare import take_spare
        from executor.engine.backend.process import ProcessPool
        spare = take_spare()
        report = {"spare": spare is not None, "taken_once": take_spare() is None}
        loop = asyncio.new_event_loop()
        pool = ProcessPool(1, loop, spare)
        try:
            report.update(loop.run_until_complete(pool.run(in_worker, (spare.proc.pid if spare else -1,), {})))
        finally:
            pool.shutdown()
            loop.close()
        return report

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["executor.engine.backend._spare_preload"])
        queue = ctx.Queue()
        proc = ctx.Process(target=in_server_child, args=(queue,), daemon=True)
        proc.start()
        print(json.dumps(queue.get(timeout=60)))
        proc.join(30)
''')


def test_a_fork_server_child_adopts_its_spare_whose_workers_are_fresh_main_processes(tmp_path) -> None:
    script = tmp_path / "spare.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "spare": True, "taken_once": True, "name": "MainProcess", "daemon": False, "start_method": None,
        "child_exit": 7, "python_c_zygote": False, "zygote_is_spare": True,
    }
