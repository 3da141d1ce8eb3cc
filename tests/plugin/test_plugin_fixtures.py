"""Acceptance: the engine fixtures (engine, session_engine, async_engine, engine_setting)."""

from __future__ import annotations

import hypothesis  # noqa: F401  # imported once here, not by every in-process pytester run
import pytest

pytestmark = pytest.mark.timeout(60)


def test_engine_runs_jobs_and_caches_under_tmp_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from executor.engine import LocalJob, ThreadJob

        def add(a, b):
            return a + b

        def test_engine(engine, tmp_path):
            assert engine.is_running
            first = LocalJob(add, args=(1, 2))
            second = ThreadJob(add, args=(first.future, 4))
            engine.submit(first, second)
            engine.wait()
            assert second.result() == 7
            assert str(engine.cache_dir).startswith(str(tmp_path))

        def test_session_engine(session_engine):
            job = LocalJob(add, args=(2, 3))
            session_engine.submit(job)
            session_engine.wait_job(job)
            assert job.result() == 5

        def test_same_session_engine(session_engine, request):
            assert session_engine is request.getfixturevalue("session_engine")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert not (pytester.path / ".executor").exists()


def test_leftover_jobs_are_cancelled_and_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from executor.engine import LocalJob

        async def forever():
            await asyncio.sleep(60)

        def test_leaves_a_job(engine):
            engine.submit(LocalJob(forever, name="forgotten"))
            assert False, "show the sections"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Captured executor teardown*",
            "1 job(s) still pending or running at teardown were cancelled:",
            "  forgotten id=* status=running",
        ]
    )


def test_engine_setting_override_configures_the_engines(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from executor.engine import EngineSetting

        @pytest.fixture(scope="session")
        def engine_setting():
            return EngineSetting(max_jobs=3, print_traceback=False)
        """
    )
    pytester.makepyfile(
        """
        def test_engine(engine):
            assert engine.setting.max_jobs == 3

        def test_session(session_engine):
            assert session_engine.setting.print_traceback is False
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


ASYNC_TEST = """
import pytest
from executor.engine import LocalJob, ThreadJob

def add(a, b):
    return a + b

{marker}
async def test_async_engine(async_engine):
    first = LocalJob(add, args=(1, 2))
    second = ThreadJob(add, args=(first.future, 3))
    await async_engine.submit_async(first, second)
    await async_engine.join()
    assert second.result() == 6
"""


@pytest.mark.parametrize(
    ("marker", "args"),
    [
        ("@pytest.mark.asyncio", ()),
        ("@pytest.mark.anyio", ()),
    ],
    ids=["pytest-asyncio", "anyio"],
)
def test_async_engine(pytester: pytest.Pytester, marker: str, args: tuple[str, ...]) -> None:
    if marker == "@pytest.mark.anyio":
        pytester.makeconftest(
            """
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"
            """
        )
    pytester.makepyfile(ASYNC_TEST.format(marker=marker))
    pytester.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(passed=1)


def test_async_engine_cancels_leftovers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from executor.engine import LocalJob

        async def forever():
            await asyncio.sleep(60)

        @pytest.mark.asyncio
        async def test_leaves_a_job(async_engine):
            job = LocalJob(forever, name="sleeper")
            await async_engine.submit_async(job)
            assert job.status == "running"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*Captured executor teardown*", "*sleeper id=* status=cancelled"])
