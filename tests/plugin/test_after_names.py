"""Acceptance: mistakes in ``job`` markers are all reported at once, in pytest's spelling of ids."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)

FAST = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_every_bad_argument_of_one_marker_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.job(retries=-1, timeout=-3)
        def test_x():
            pass
        """
    )
    result = pytester.runpytest(*FAST)
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid job markers:",
            "  test_bad.py::test_x: job(retries=-1) must be an integer >= 0",
            "  test_bad.py::test_x: job(timeout=-3) must be a positive, finite number of seconds up to 31622400 (a year), or None",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_every_cycle_of_a_file_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cycles="""
        import pytest

        @pytest.mark.job(after="test_b")
        def test_a():
            pass

        @pytest.mark.job(after="test_a")
        def test_b():
            pass

        @pytest.mark.job(after="test_a")
        def test_waits_on_a_cycle():
            pass

        @pytest.mark.job(after="test_e")
        def test_c():
            pass

        @pytest.mark.job(after="test_c")
        def test_d():
            pass

        @pytest.mark.job(after="test_d")
        def test_e():
            pass
        """
    )
    result = pytester.runpytest(*FAST)
    result.stderr.fnmatch_lines(
        [
            "ERROR: invalid job markers:",
            "  dependency cycle in job(after=...): test_cycles.py::test_a -> test_cycles.py::test_b -> "
            "test_cycles.py::test_a (each runs after the next)",
            "  dependency cycle in job(after=...): test_cycles.py::test_c -> test_cycles.py::test_e -> "
            "test_cycles.py::test_d -> test_cycles.py::test_c (each runs after the next)",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


NON_ASCII = """
import pytest

@pytest.mark.parametrize("city", ["Zürich", "Genève"])
def test_city(city):
    pass

@pytest.mark.job(after=["test_city[Zürich]", "test_city[Gen\\\\xe8ve]"])
def test_journey():
    pass
"""


def test_non_ascii_parametrize_ids_match_as_written_or_escaped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trip=NON_ASCII)
    result = pytester.runpytest(*FAST, "-v", "-k", "journey", "-rs")
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_trip.py:7: dependency test_trip.py::test_city[[]Z\\xfcrich[]] was not selected; "
            "test_trip.py::test_city[[]Gen\\xe8ve[]] was not selected (use --executor-with-deps to run them)"
        ]
    )
    pulled = pytester.runpytest(*FAST, "-v", "-k", "journey", "--executor-with-deps")
    pulled.stdout.fnmatch_lines(["=* 3 passed in *s =*"])


def test_suggestions_show_the_escaped_id(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trip=NON_ASCII.replace("test_city[Zürich]", "test_city[Zurich]"))
    result = pytester.runpytest(*FAST)
    result.stderr.fnmatch_lines(
        [
            "  test_trip.py::test_journey: job(after='test_city[[]Zurich[]]'): 'test_city[[]Zurich[]]' matches no test; "
            "did you mean 'test_city[[]Z\\xfcrich[]]'*"
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
