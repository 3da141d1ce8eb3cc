"""The engine's default cache dir is private: created 0700, refused when it is not ours."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes"),
]

_PROBE = textwrap.dedent("""
    import sys
    from executor.engine import Engine, EngineSetting
    from executor.engine.job.extend import SubprocessJob
    from executor.engine.log import logger
    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="{message}")
    with Engine() as engine:
        job = SubprocessJob("true", record_cmd=True)
        engine.submit(job)
        engine.wait(timeout=60)
        print(engine.cache_dir)
        print(job.cache_dir / "command.sh")
""")


def _run_engine(tmpdir: Path) -> tuple[Path, Path, str]:
    """Run an engine with ``TMPDIR=tmpdir`` in a fresh process: its cache dir, command file, stderr."""
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    cache_dir, command = proc.stdout.split()
    return Path(cache_dir), Path(command), proc.stderr


def test_default_cache_root_is_created_private_and_its_files_too(tmp_path: Path) -> None:
    cache_dir, command, _ = _run_engine(tmp_path)
    root = tmp_path / f"executor-engine-{os.getuid()}"
    assert cache_dir.parent == root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(command.stat().st_mode) == 0o600


def test_a_permissive_root_of_ours_is_narrowed_to_0700(tmp_path: Path) -> None:
    root = tmp_path / f"executor-engine-{os.getuid()}"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    cache_dir, _, _ = _run_engine(tmp_path)
    assert cache_dir.parent == root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_root_that_is_not_a_directory_of_ours_is_refused_for_a_fresh_private_one(tmp_path: Path) -> None:
    """A symlink planted by another user must not redirect the cache (one case of 'not ours')."""
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    root = tmp_path / f"executor-engine-{os.getuid()}"
    root.symlink_to(elsewhere)
    cache_dir, command, stderr = _run_engine(tmp_path)
    assert not cache_dir.is_relative_to(elsewhere) and cache_dir.parent != root
    assert f"not using the cache dir {root}: it is not a directory" in stderr
    assert list(elsewhere.iterdir()) == []
    assert not cache_dir.parent.exists()  # the fallback is removed when the process ends
    assert not command.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory owned by another user")
def test_a_root_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / f"executor-engine-{os.getuid()}"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    cache_dir, _, stderr = _run_engine(tmp_path)
    assert cache_dir.parent != root
    assert f"not using the cache dir {root}: it is owned by uid 65534" in stderr
