"""Unit tests of the pure timeline rendering (SVG and HTML from job spans)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_executor.views._critical_path import JobSpan
from pytest_executor.views._timeline import (
    format_seconds,
    natural_key,
    render_html,
    render_svg,
    timeline_format,
    write_timeline,
)

SVG = "{http://www.w3.org/2000/svg}"


def sample_spans() -> list[JobSpan]:
    """Three workers, a dependency chain, every outcome and awkward node ids."""
    return [
        JobSpan("t.py::a", "w0", "passed", 100.0, 101.0, 0.1, 0.8, 0.1, wait=0.02),
        JobSpan("t.py::b[<x&\"y\">]", "w1", "failed", 100.0, 100.5, call=0.5),
        JobSpan("t.py::c", "w1", "passed", 101.0, 103.0, call=2.0, after=("t.py::a",)),
        JobSpan("t.py::d", "w10", "skipped", 100.1, 100.1),
        JobSpan("t.py::e", "w2", "xfailed", 100.2, 100.4, after=("t.py::missing",)),
    ]


def job_rects(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "job"]


def test_svg_is_valid_xml_with_one_job_rect_per_job() -> None:
    spans = sample_spans()
    root = ET.fromstring(render_svg(spans).encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    rects = job_rects(root)
    assert sorted(r.get("data-nodeid") or "" for r in rects) == sorted(
        s.nodeid for s in spans
    )
    # Awkward characters survive escaping intact.
    assert any(r.get("data-nodeid") == 't.py::b[<x&"y">]' for r in rects)


def test_svg_has_one_lane_per_worker_in_natural_order_holding_its_jobs() -> None:
    root = ET.fromstring(render_svg(sample_spans()))
    lanes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "lane"]
    assert [g.get("data-worker") for g in lanes] == ["w0", "w1", "w2", "w10"]
    per_lane = {g.get("data-worker"): len(job_rects(g)) for g in lanes}
    assert per_lane == {"w0": 1, "w1": 2, "w2": 1, "w10": 1}


def test_svg_colours_by_outcome_and_marks_the_critical_path() -> None:
    root = ET.fromstring(render_svg(sample_spans()))
    rects = {r.get("data-nodeid"): r for r in job_rects(root)}
    assert rects["t.py::a"].get("fill") != rects['t.py::b[<x&"y">]'].get("fill")
    critical = {n for n, r in rects.items() if r.get("data-critical") == "true"}
    assert critical == {"t.py::a", "t.py::c"}
    # Zero-length jobs are still visible.
    assert float(rects["t.py::d"].get("width") or 0) > 0


def test_svg_tooltips_name_the_job_its_phases_and_wait() -> None:
    root = ET.fromstring(render_svg(sample_spans()))
    rect = next(r for r in job_rects(root) if r.get("data-nodeid") == "t.py::a")
    title = rect.find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert title.text.splitlines()[0] == "t.py::a"
    assert "setup 100 ms · call 800 ms · teardown 100 ms" in title.text
    assert "wait 20 ms" in title.text


def test_svg_draws_dependency_lines_only_between_known_jobs() -> None:
    root = ET.fromstring(render_svg(sample_spans()))
    deps = [p for p in root.iter(f"{SVG}path") if p.get("class") == "dep"]
    assert [(d.get("data-from"), d.get("data-to")) for d in deps] == [
        ("t.py::a", "t.py::c")
    ]
    assert deps[0].get("data-critical") == "true"


def test_html_is_self_contained_and_carries_the_same_chart() -> None:
    spans = sample_spans()
    page = render_html(spans)
    assert page.startswith("<!DOCTYPE html>")
    # No network: nothing loaded from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "<link" not in page
    assert page.count('class="job"') == len(spans)
    assert page.count('class="lane"') == 4
    assert "ideal with unlimited workers" in page
    assert 'class="chain"' in page and 'id="tooltip"' in page


def test_empty_run_renders() -> None:
    root = ET.fromstring(render_svg([]))
    assert job_rects(root) == []
    assert "0 jobs on 0 workers" in render_html([])


@pytest.mark.parametrize("name", ["run.html", "RUN.HTML", "sub/dir/run.svg"])
def test_write_timeline_picks_format_from_suffix(tmp_path: Path, name: str) -> None:
    written = write_timeline(tmp_path / name, sample_spans())
    text = written.read_text(encoding="utf-8")
    if name.lower().endswith(".svg"):
        ET.fromstring(text.encode("utf-8"))
    else:
        assert text.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("name", ["run.png", "run", "run.html.txt"])
def test_unknown_suffix_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"'.*' must end with \.html .* or \.svg"):
        timeline_format(name)


def test_helpers() -> None:
    assert sorted(["w10", "w2", "w1"], key=natural_key) == ["w1", "w2", "w10"]
    assert format_seconds(0.0004) == "0.4 ms"
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(1.5) == "1.50 s"
    assert format_seconds(125) == "2m 05s"
