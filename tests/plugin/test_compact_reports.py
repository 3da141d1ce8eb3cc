"""Compact reports (plain passed phases sent as four numbers) change nothing the user sees.

The same mixed suite runs on the ``process`` backend with compact reports on
and off (``PYTEST_EXECUTOR_COMPACT_REPORTS=0``); the terminal output and the
junitxml must be byte-identical once run times are masked.  One worker keeps
the order of the reports fixed.
"""

from __future__ import annotations

import re

import pytest

from pytest_executor.backends._compact import ENV_COMPACT, compact_of, item_keywords

pytestmark = pytest.mark.timeout(120)

MIXED_SUITE = """
import warnings
import pytest

@pytest.fixture(scope="module")
def shared():
    return {"n": 1}

@pytest.mark.parametrize("n", range(12))
def test_plain(n, shared):
    assert n >= 0

def test_prints():
    print("some output")

def test_warns():
    warnings.warn(UserWarning("careful"))

def test_property(record_property):
    record_property("answer", 42)

def test_fails():
    assert 1 == 2

def test_skip():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed meanwhile")
def test_xpass():
    pass

def test_marker_added_while_running(request):
    request.applymarker(pytest.mark.slow)

class TestGroup:
    @pytest.mark.parametrize("word", ["a", "bb"])
    def test_word(self, word, tmp_path):
        (tmp_path / "f").write_text(word)

def test_logs():
    import logging
    logging.getLogger("x").warning("logged")
"""

_TIMES = [
    (re.compile(r" in \d+\.\d+s"), " in <t>s"),
    (re.compile(r'time="[\d.]+"'), 'time="<t>"'),
    (re.compile(r'timestamp="[^"]+"'), 'timestamp="<t>"'),
    (re.compile(r'hostname="[^"]+"'), 'hostname="<h>"'),
    (re.compile(r"\d+\.\d+s (call|setup|teardown)"), r"<t>s \1"),
    (re.compile(r"\d+(\.\d+)? ?(ms|s)\b"), "<t>"),  # the job table's and critical path's times
]


_STARTED = re.compile(r"^test_mixed\.py::\S+ $")
_SLOWEST = re.compile(r"^    \S+ \(w0, <t>\)$", re.M)
"""The critical path's job: the slowest test of the run, whichever it was this time."""


def _masked(text: str) -> str:
    for pattern, replacement in _TIMES:
        text = pattern.sub(replacement, text)
    return _SLOWEST.sub("    <slowest test>", text)


def _without_starts(text: str) -> str:
    """``-v`` output without the lines of items starting: a prefetched item may start before the last one ended."""
    return "\n".join(line for line in text.splitlines() if not _STARTED.match(line))


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, compact: bool, *extra: str) -> tuple[str, str]:
    monkeypatch.setenv(ENV_COMPACT, "1" if compact else "0")
    xml = pytester.path / f"junit-{int(compact)}.xml"
    result = pytester.runpytest_subprocess(
        "--executor-backend=process", "--executor-workers=1", "-p", "no:cacheprovider", "-rA",
        "-W", "default::pytest.PytestUnknownMarkWarning", f"--junitxml={xml}", *extra,
    )
    output = result.stdout.str().replace(xml.name, "junit.xml")
    return _masked(output), _masked(xml.read_text())


@pytest.mark.parametrize("extra", [(), ("-v",)], ids=["quiet", "verbose"])
def test_compact_reports_print_and_record_the_same(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    full_output, full_xml = _run(pytester, monkeypatch, False, *extra)
    compact_output, compact_xml = _run(pytester, monkeypatch, True, *extra)
    assert "1 failed, 19 passed, 1 skipped, 1 xfailed, 1 xpassed" in full_output
    assert _without_starts(compact_output) == _without_starts(full_output)
    assert compact_xml == full_xml
    assert '<property name="answer" value="42" />' in full_xml


def test_only_plain_passed_phases_are_compact(pytester: pytest.Pytester) -> None:
    item = pytester.getitem("def test_func(): pass")
    keywords = item_keywords(item)
    plain = pytest.TestReport(item.nodeid, item.location, dict(keywords), "passed", None, "call",
                              sections=[], duration=0.5, start=1.0, stop=1.5, user_properties=[])
    assert compact_of(plain, keywords) == ("call", 0.5, 1.0, 1.5)
    with_output = pytest.TestReport(item.nodeid, item.location, dict(keywords), "passed", None, "call",
                                    sections=[("Captured stdout call", "x")], user_properties=[])
    assert compact_of(with_output, keywords) is None
    with_property = pytest.TestReport(item.nodeid, item.location, dict(keywords), "passed", None, "call",
                                      user_properties=[("a", 1)])
    assert compact_of(with_property, keywords) is None
    xpassed = pytest.TestReport(item.nodeid, item.location, dict(keywords), "passed", None, "call",
                                sections=[], user_properties=[], wasxfail="reason")
    assert compact_of(xpassed, keywords) is None
    marked = pytest.TestReport(item.nodeid, item.location, {**keywords, "slow": 1}, "passed", None, "call",
                               sections=[], user_properties=[])
    assert compact_of(marked, keywords) is None
    failed = pytest.TestReport(item.nodeid, item.location, dict(keywords), "failed", "boom", "call",
                               sections=[], user_properties=[])
    assert compact_of(failed, keywords) is None
