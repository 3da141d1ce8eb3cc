"""``--executor-timeline``: the picture of a real run, checked in a real browser.

The HTML timeline of the demo suite (``examples/``) is opened in headless
Chromium; the DOM after its script ran must have one lane per worker and one
bar per job of the run (as told by the JSON report of the same run).  The SVG
form is parsed as XML.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SVG = "{http://www.w3.org/2000/svg}"
COMMON = ["-p", "no:cacheprovider", "--executor-table=summary"]


def find_chromium() -> str | None:
    """The headless-capable Chromium of the OS packages, if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(args: list[str], profile: Path, timeout: float = 60) -> str:
    """Run headless Chromium once; return its stdout.  Never leaves it running."""
    browser = find_chromium()
    if browser is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium): the timeline's "
            "rendering in a browser is not checked"
        )
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-zygote",
        "--disable-dev-shm-usage", "--disable-breakpad", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {timeout}s: {command}")
    assert process.returncode == 0, f"chromium failed ({process.returncode}):\n{err}"
    return out


class DomElements(HTMLParser):
    """Collects the attributes of every element of a DOM dump, by tag."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, tag: str, name: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and name in a.get("class", "").split()]


def ran_jobs(report: Path) -> dict[str, str]:
    """``{nodeid: worker}`` of the jobs that ran, from the JSON report."""
    data: dict[str, Any] = json.loads(report.read_text())
    return {job["test"]: job["worker"] for job in data["jobs"] if job["start"] is not None}


@pytest.mark.timeout(240)
def test_html_timeline_of_demo_suite_in_headless_chromium(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    if not EXAMPLES.is_dir():
        pytest.fail(f"the demo suite is missing: {EXAMPLES}")
    html = tmp_path / "out" / "timeline.html"
    report = tmp_path / "run.json"
    result = pytester.runpytest_subprocess(
        str(EXAMPLES), *COMMON, "--executor-backend=process", "--executor-workers=2",
        f"--executor-timeline={html}", f"--executor-report={report}",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=26, xfailed=1)  # the demo suite as shipped in examples/
    result.stdout.fnmatch_lines(
        ["critical path: * job*, * busy (ideal wall time with unlimited workers)",
         f"executor timeline: {html}"]
    )
    jobs = ran_jobs(report)
    assert len(set(jobs.values())) >= 2, f"expected jobs on 2 workers: {jobs}"

    dump = DomElements()
    dump.feed(run_chromium(["--dump-dom", html.as_uri()], tmp_path / "profile"))
    root = dump.elements[0][1] if dump.elements else {}
    assert root.get("data-timeline") == "ready", "the page's script did not run"
    lanes = [a["data-worker"] for a in dump.with_class("g", "lane")]
    assert sorted(lanes) == sorted(set(jobs.values()))
    bars = {a["data-nodeid"]: a["data-worker"] for a in dump.with_class("rect", "job")}
    assert bars == jobs
    assert len(dump.with_class("rect", "job")) == len(jobs)
    assert any(a["data-critical"] == "true" for a in dump.with_class("rect", "job"))

    # And it paints: a screenshot of the page comes out as a real PNG.
    png = tmp_path / "timeline.png"
    run_chromium(
        [f"--screenshot={png}", "--window-size=1280,720", html.as_uri()],
        tmp_path / "profile",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5_000


SUITE = """
import pytest

def test_base():
    pass

@pytest.mark.job(after="test_base")
def test_next():
    pass

@pytest.mark.parametrize("i", range(4))
def test_many(i):
    assert i != 3

@pytest.mark.job(after="test_many")
def test_after_failure():
    pass
"""


def test_svg_timeline_is_valid_xml_with_one_rect_per_job(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_svg=SUITE)
    svg = tmp_path / "run.svg"
    report = tmp_path / "run.json"
    result = pytester.runpytest_subprocess(
        *COMMON, "--executor-backend=thread", f"--executor-timeline={svg}",
        f"--executor-report={report}",
    )
    result.assert_outcomes(passed=5, failed=1, skipped=1)
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "job"]
    jobs = ran_jobs(report)
    assert sorted(r.get("data-nodeid") for r in rects) == sorted(jobs)
    lanes = [g.get("data-worker") for g in root.iter(f"{SVG}g") if g.get("class") == "lane"]
    assert sorted(lanes) == sorted(set(jobs.values()))
    outcomes = {r.get("data-nodeid"): r.get("data-outcome") for r in rects}
    assert outcomes["test_svg.py::test_after_failure"] == "skipped"
    assert outcomes["test_svg.py::test_many[3]"] == "failed"
    deps = {(d.get("data-from"), d.get("data-to")) for d in root.iter(f"{SVG}path")
            if d.get("class") == "dep"}
    assert ("test_svg.py::test_base", "test_svg.py::test_next") in deps


SUFFIX_ERROR = "must end with .html (interactive page) or .svg (static picture)"


@pytest.mark.parametrize(
    ("value", "message"),
    [("run.png", f"'run.png' {SUFFIX_ERROR}"), ("timeline", f"'timeline' {SUFFIX_ERROR}"), (" ", "the path is empty")],
)
def test_bad_timeline_path_is_a_usage_error(pytester: pytest.Pytester, value: str, message: str) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess(f"--executor-timeline={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: --executor-timeline: {message} (option --executor-timeline / ini executor_timeline)"
    ])
    assert "Traceback" not in result.stderr.str()


def test_timeline_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nexecutor_timeline = out/run.svg\n")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    ET.parse(pytester.path / "out" / "run.svg")


def test_unwritable_timeline_path_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    (pytester.path / "blocker").write_text("a file, not a directory")
    result = pytester.runpytest_subprocess("--executor-timeline=blocker/run.html")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["executor timeline: cannot write blocker/run.html: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


DEFERRED = """
import pytest

@pytest.fixture(scope="module")
def resource():
    yield "ready"

def test_build(resource):
    pass

@pytest.mark.job(after="test_build")
def test_use(resource):
    pass
"""


def test_bars_respect_dependencies_on_process_workers(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # Whatever the worker does with teardowns (it may defer one until it learns
    # its next item), a bar ends before the bars of its dependents begin.
    pytester.makepyfile(test_deferred=DEFERRED)
    svg = tmp_path / "run.svg"
    result = pytester.runpytest_subprocess(
        *COMMON, "--executor-backend=process", "--executor-workers=2",
        f"--executor-timeline={svg}",
    )
    result.assert_outcomes(passed=2)
    rects = {
        r.get("data-nodeid"): r
        for r in ET.parse(svg).getroot().iter(f"{SVG}rect")
        if r.get("class") == "job"
    }

    def start(name: str) -> float:
        return float(rects[f"test_deferred.py::{name}"].get("data-start") or "nan")

    def stop(name: str) -> float:
        rect = rects[f"test_deferred.py::{name}"]
        return start(name) + float(rect.get("data-duration") or "nan")

    slack = 0.002  # the reports' clocks are rounded
    assert stop("test_build") <= start("test_use") + slack
