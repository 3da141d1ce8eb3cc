"""The engine writes nothing in the working directory unless asked to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from executor.engine import Engine, LocalJob
from executor.engine.job.extend import SubprocessJob


def _write_marker() -> str:
    return "ok"


def test_default_cache_dirs_stay_out_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine = Engine()
    try:
        with engine:
            recorded = SubprocessJob("true", record_cmd=True)  # writes the command to its cache dir
            redirected = LocalJob(_write_marker, redirect_out_err=True)
            engine.submit(recorded, redirected)
            engine.wait(timeout=30)
            assert recorded.status == "done" and redirected.status == "done"
            assert (recorded.cache_dir / "command.sh").exists()
            assert not recorded.cache_dir.is_relative_to(tmp_path)
        assert list(tmp_path.iterdir()) == []
    finally:
        shutil.rmtree(engine.cache_dir, ignore_errors=True)  # kept by design for users; not for a test


def test_configured_cache_path_is_used(tmp_path: Path) -> None:
    from executor.engine import EngineSetting

    with Engine(setting=EngineSetting(cache_path=str(tmp_path / "cache"))) as engine:
        job = SubprocessJob("true", record_cmd=True)
        engine.submit(job)
        engine.wait(timeout=30)
    assert (job.cache_dir / "command.sh").exists()
    assert job.cache_dir.is_relative_to(tmp_path / "cache")


def test_an_engine_whose_jobs_need_no_cache_dir_leaves_nothing_in_the_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default cache root is made on first use of ``engine.cache_dir``, private, not when an engine is made."""
    import stat
    import tempfile

    from executor.engine import ThreadJob

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with Engine() as engine:
        jobs = [LocalJob(_write_marker), ThreadJob(_write_marker)]
        engine.submit(*jobs)
        engine.wait(timeout=30)
        assert [job.result() for job in jobs] == ["ok", "ok"]
    assert list(tmp_path.iterdir()) == []

    cache_dir = engine.cache_dir  # first use: the root is made now, private
    root = cache_dir.parent
    assert cache_dir.name == engine.id and root.parent == tmp_path and root.name.startswith("executor-engine-")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
