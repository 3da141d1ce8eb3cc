"""Draw a run as a Gantt chart: one lane per worker, one bar per job.

Pure rendering from :class:`~pytest_executor.views._critical_path.JobSpan` records to
text; nothing here talks to pytest.  Two formats share one SVG drawing:

* ``.svg`` — a static picture; each bar carries a ``<title>`` tooltip.
* ``.html`` — a self-contained page (inline CSS, SVG and a few lines of JS; no
  network) with a run summary, a legend, the critical path listed, and a
  tooltip/hover highlight of each job's dependencies.

The markup is stable so tests (and users' scripts) can query it:
``g.lane[data-worker]`` per worker, containing one ``rect.job[data-nodeid]`` per
job (with ``data-outcome``, ``data-critical``, ``data-setup``/``data-call``/
``data-teardown``/``data-wait`` in seconds), and ``path.dep[data-from][data-to]``
per dependency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Literal, final

from pytest_executor.views._critical_path import CriticalPath, JobSpan, critical_path

TimelineFormat = Literal["html", "svg"]
_LaneY = Callable[[str], float]
"""Maps a worker name to the top y of its lane."""

OUTCOME_COLOURS: dict[str, str] = {
    "passed": "#3fa34d",
    "failed": "#d64541",
    "error": "#8e1b1b",
    "skipped": "#b0b4ba",
    "xfailed": "#e0a030",
    "xpassed": "#8a5cc2",
}
"""Bar fill per outcome; anything else is drawn in :data:`OTHER_COLOUR`."""
OTHER_COLOUR = "#5b7083"
CRITICAL_COLOUR = "#ff7a00"

_LANE_HEIGHT = 28
_BAR_HEIGHT = 18
_AXIS_HEIGHT = 28
_PAD = 10
_MIN_BAR_WIDTH = 1.5
_MAX_LISTED = 50  # critical-path jobs listed under the chart


def timeline_format(path: str | Path) -> TimelineFormat:
    """The format a timeline path asks for, from its suffix; ``ValueError`` otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix == ".html":
        return "html"
    if suffix == ".svg":
        return "svg"
    raise ValueError(
        f"{str(path)!r} must end with .html (interactive page) or .svg (static picture)"
    )


def parse_timeline_path(raw: str) -> str:
    """Option parser for ``--executor-timeline``: a path ending in .html or .svg."""
    if not raw.strip():
        raise ValueError("the path is empty")
    timeline_format(raw)
    return raw


def write_timeline(path: str | Path, spans: Sequence[JobSpan]) -> Path:
    """Render ``spans`` in the format named by ``path``'s suffix and write it there."""
    target = Path(path)
    fmt = timeline_format(target)
    text = render_html(spans) if fmt == "html" else render_svg(spans)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def render_svg(spans: Sequence[JobSpan], *, width: int = 1000) -> str:
    """A standalone SVG document (with an XML declaration) of the run."""
    drawing = _draw(spans, critical_path(spans), width=width, native_tooltips=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + drawing + "\n"


def render_html(spans: Sequence[JobSpan], *, width: int = 1000) -> str:
    """A self-contained HTML page with the chart, a summary and hover tooltips."""
    path = critical_path(spans)
    drawing = _draw(spans, path, width=width, native_tooltips=False)
    return _HTML_TEMPLATE.format(
        style=_CSS,
        script=_JS,
        summary=escape(summary_text(spans, path)),
        legend=_legend_html(spans),
        chart=drawing,
        critical=_critical_html(path),
    )


def summary_text(spans: Sequence[JobSpan], path: CriticalPath) -> str:
    """One line: jobs, workers, wall time, ideal wall time."""
    workers = len({s.worker for s in spans})
    return (
        f"{len(spans)} jobs on {workers} worker{'s' if workers != 1 else ''}"
        f" · wall {format_seconds(path.wall)}"
        f" · ideal with unlimited workers {format_seconds(path.ideal)}"
        f" · critical path {len(path.chain)} job{'s' if len(path.chain) != 1 else ''}"
    )


def format_seconds(seconds: float) -> str:
    """Short human duration: ``0.4 ms``, ``120 ms``, ``1.25 s``, ``2m 03s``."""
    if seconds < 0.001:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``w2`` before ``w10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", text)
        if part
    )


@final
@dataclass(frozen=True)
class _Scale:
    """Maps run time to x pixels."""

    t0: float
    span: float
    left: float
    width: float

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / self.span * self.width


def _draw(
    spans: Sequence[JobSpan], path: CriticalPath, *, width: int, native_tooltips: bool
) -> str:
    workers = sorted({s.worker for s in spans}, key=natural_key)
    lane_of = {w: i for i, w in enumerate(workers)}
    label_width = min(240, max(70, 8 * max((len(w) for w in workers), default=0) + 16))
    t0 = min((s.start for s in spans), default=0.0)
    scale = _Scale(t0=t0, span=max(path.wall, 1e-3), left=label_width, width=width)
    total_width = label_width + width + _PAD
    height = _AXIS_HEIGHT + len(workers) * _LANE_HEIGHT + _PAD

    def lane_y(worker: str) -> float:
        return _AXIS_HEIGHT + lane_of[worker] * _LANE_HEIGHT

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" '
        f'width="{total_width:.0f}" height="{height}" '
        f'viewBox="0 0 {total_width:.0f} {height}" '
        'font-family="system-ui, sans-serif" font-size="12">',
        _DEFS,
        _axis(scale, height),
    ]
    critical = path.nodeids
    parts.append('<g class="lanes">')
    for worker in workers:
        y = lane_y(worker)
        parts.append(f'<g class="lane" data-worker="{_attr(worker)}">')
        parts.append(
            f'<rect class="lane-bg" x="0" y="{y}" width="{total_width:.0f}" '
            f'height="{_LANE_HEIGHT}" fill="{"#f4f6f8" if lane_of[worker] % 2 else "#ffffff"}"/>'
        )
        parts.append(
            f'<text class="lane-label" x="6" y="{y + _LANE_HEIGHT / 2 + 4:.1f}" '
            f'fill="#333">{escape(worker)}</text>'
        )
        for s in (s for s in spans if s.worker == worker):
            parts.append(_bar(s, scale, y, s.nodeid in critical, native_tooltips))
        parts.append("</g>")
    parts.append("</g>")
    parts.append(_dependency_lines(spans, scale, lane_y, path))
    parts.append(_critical_links(path, scale, lane_y))
    parts.append("</svg>")
    return "\n".join(parts)


_DEFS = (
    "<defs>"
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
    'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
    'fill="#555"/></marker>'
    '<marker id="arrow-critical" viewBox="0 0 10 10" refX="9" refY="5" '
    'markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
    f'<path d="M0,0 L10,5 L0,10 z" fill="{CRITICAL_COLOUR}"/></marker>'
    "</defs>"
)


def _axis(scale: _Scale, height: int) -> str:
    step = _tick_step(scale.span)
    parts = ['<g class="axis">']
    for i in range(int(scale.span / step + 1e-9) + 1):
        t = i * step
        x = scale.x(scale.t0 + t)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{_AXIS_HEIGHT - 6}" x2="{x:.1f}" '
            f'y2="{height - _PAD}" stroke="#d0d4d9" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="tick-label" x="{x:.1f}" y="{_AXIS_HEIGHT - 10}" '
            f'text-anchor="middle" fill="#555">{escape(_tick_label(t, step))}</text>'
        )
    parts.append("</g>")
    return "\n".join(parts)


def _tick_step(span: float, target_ticks: int = 8) -> float:
    """A 1/2/5 × 10^k step giving about ``target_ticks`` ticks over ``span``."""
    raw = span / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return float(factor * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _tick_label(t: float, step: float) -> str:
    if step >= 1:
        return f"{t:.0f}s"
    if step >= 0.1:
        return f"{t:.1f}s"
    return f"{t * 1000:.0f}ms"


def _bar(
    s: JobSpan, scale: _Scale, lane_y: float, is_critical: bool, native_tooltips: bool
) -> str:
    x = scale.x(s.start)
    w = max(_MIN_BAR_WIDTH, scale.x(s.stop) - x)
    y = lane_y + (_LANE_HEIGHT - _BAR_HEIGHT) / 2
    fill = OUTCOME_COLOURS.get(s.outcome, OTHER_COLOUR)
    stroke = (
        f'stroke="{CRITICAL_COLOUR}" stroke-width="2.5"'
        if is_critical
        else 'stroke="#ffffff" stroke-width="0.5"'
    )
    attrs = (
        f'class="job" data-nodeid="{_attr(s.nodeid)}" data-worker="{_attr(s.worker)}" '
        f'data-outcome="{_attr(s.outcome)}" data-critical="{str(is_critical).lower()}" '
        f'data-start="{s.start - scale.t0:.6f}" data-duration="{s.duration:.6f}" '
        f'data-setup="{s.setup:.6f}" data-call="{s.call:.6f}" '
        f'data-teardown="{s.teardown:.6f}" data-wait="{s.wait:.6f}" '
        f'data-after="{_attr(" ".join(s.after))}" '
        f'x="{x:.2f}" y="{y:.1f}" width="{w:.2f}" height="{_BAR_HEIGHT}" rx="2" '
        f'fill="{fill}" {stroke}'
    )
    if not native_tooltips:
        return f"<rect {attrs}/>"
    return f"<rect {attrs}><title>{escape(tooltip_text(s))}</title></rect>"


def tooltip_text(s: JobSpan) -> str:
    """The multi-line description of one job shown on hover."""
    lines = [
        s.nodeid,
        f"{s.outcome} on {s.worker}" + (f" ({s.backend})" if s.backend else ""),
        f"setup {format_seconds(s.setup)} · call {format_seconds(s.call)}"
        f" · teardown {format_seconds(s.teardown)}",
        f"wait {format_seconds(s.wait)} · total {format_seconds(s.duration)}",
    ]
    if s.after:
        lines.append("after " + ", ".join(s.after))
    return "\n".join(lines)


def _dependency_lines(
    spans: Sequence[JobSpan], scale: _Scale, lane_y: _LaneY, path: CriticalPath
) -> str:
    """One ``path.dep`` per known dependency, from the end of one bar to the start of the other."""
    by_id = {s.nodeid: s for s in spans}
    chain_links = {(a.nodeid, b.nodeid) for a, b in zip(path.chain, path.chain[1:])}
    parts = ['<g class="deps" fill="none">']
    for s in spans:
        for dep in s.after:
            source = by_id.get(dep)
            if source is None:
                continue
            on_path = (dep, s.nodeid) in chain_links
            parts.append(
                f'<path class="dep" data-from="{_attr(dep)}" data-to="{_attr(s.nodeid)}" '
                f'data-critical="{str(on_path).lower()}" '
                f'd="{_link_shape(source, s, scale, lane_y)}" '
                f'stroke="{CRITICAL_COLOUR if on_path else "#555"}" '
                f'stroke-width="{1.5 if on_path else 1}" '
                f'stroke-opacity="{0.9 if on_path else 0.45}" '
                f'marker-end="url(#{"arrow-critical" if on_path else "arrow"})"/>'
            )
    parts.append("</g>")
    return "\n".join(parts)


def _link_shape(source: JobSpan, target: JobSpan, scale: _Scale, lane_y: _LaneY) -> str:
    """SVG path data joining two bars: straight across lanes, an arc within one."""
    x1, x2 = scale.x(source.stop), scale.x(target.start)
    if source.worker != target.worker:
        mid = _LANE_HEIGHT / 2
        y1, y2 = lane_y(source.worker) + mid, lane_y(target.worker) + mid
        return f"M{x1:.2f},{y1:.1f} L{x2:.2f},{y2:.1f}"
    # Same lane: a straight line would run along the bars in between; arc over them.
    top = lane_y(source.worker) + (_LANE_HEIGHT - _BAR_HEIGHT) / 2
    lift = min(_LANE_HEIGHT * 0.9, 6 + abs(x2 - x1) / 8)
    return (
        f"M{x1:.2f},{top + 2:.1f} "
        f"C{x1:.2f},{top - lift:.1f} {x2:.2f},{top - lift:.1f} {x2:.2f},{top + 1:.1f}"
    )


def _critical_links(path: CriticalPath, scale: _Scale, lane_y: _LaneY) -> str:
    """Dashed joins between consecutive chain jobs that are not already a dep line."""
    mid = _LANE_HEIGHT / 2
    parts = ['<g class="critical-links" fill="none">']
    for before, after in zip(path.chain, path.chain[1:]):
        if before.nodeid in after.after:
            continue  # drawn as a critical dependency line
        parts.append(
            f'<line class="critical-link" data-from="{_attr(before.nodeid)}" '
            f'data-to="{_attr(after.nodeid)}" '
            f'x1="{scale.x(before.stop):.2f}" y1="{lane_y(before.worker) + mid:.1f}" '
            f'x2="{scale.x(after.start):.2f}" y2="{lane_y(after.worker) + mid:.1f}" '
            f'stroke="{CRITICAL_COLOUR}" stroke-width="1.5" stroke-dasharray="3 2"/>'
        )
    parts.append("</g>")
    return "\n".join(parts)


def _attr(value: str) -> str:
    return escape(value, quote=True)


def _legend_html(spans: Sequence[JobSpan]) -> str:
    counts: dict[str, int] = {}
    for s in spans:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    items = [
        f'<li data-outcome="{_attr(outcome)}"><span class="swatch" style="background:'
        f'{OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)}"></span>{escape(outcome)} '
        f"({count})</li>"
        for outcome, count in sorted(counts.items())
    ]
    items.append(
        '<li><span class="swatch critical"></span>critical path</li>'
    )
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _critical_html(path: CriticalPath) -> str:
    if not path.chain:
        return "<p>No jobs ran.</p>"
    shown = path.chain[:_MAX_LISTED]
    rows = "".join(
        f'<li data-nodeid="{_attr(s.nodeid)}"><code>{escape(s.nodeid)}</code> '
        f"on {escape(s.worker)}, {format_seconds(s.duration)}</li>"
        for s in shown
    )
    if len(path.chain) > len(shown):
        rows += f"<li>… and {len(path.chain) - len(shown)} more</li>"
    return (
        f"<p>{format_seconds(path.busy)} of the {format_seconds(path.wall)} wall time "
        f"was spent running these jobs, one after another:</p>"
        f'<ol class="chain">{rows}</ol>'
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.summary { margin: 0 0 8px; color: #444; }
.legend { list-style: none; padding: 0; margin: 0 0 8px; display: flex; gap: 14px;
  flex-wrap: wrap; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 4px; vertical-align: -1px; }
.swatch.critical { border: 2.5px solid #ff7a00; width: 7px; height: 7px; }
.chart { overflow-x: auto; border: 1px solid #dde1e6; border-radius: 4px; }
rect.job { cursor: pointer; }
rect.job:hover, rect.job.related { filter: brightness(1.15); stroke: #111; }
path.dep.active { stroke: #111; stroke-opacity: 1; stroke-width: 2; }
.tooltip { position: fixed; pointer-events: none; background: #1f2933; color: #fff;
  padding: 6px 8px; border-radius: 4px; font-size: 12px; white-space: pre;
  max-width: 640px; box-shadow: 0 2px 6px rgba(0,0,0,.3); }
.chain code { font-size: 12px; }
"""

# Hover: show the tooltip, highlight the job's dependency lines and the jobs
# at their other ends.  Works from file:// with no network.
_JS = """
(function () {
  var tip = document.getElementById('tooltip');
  function secs(v) {
    var s = parseFloat(v);
    if (s < 0.001) return (s * 1000).toFixed(1) + ' ms';
    if (s < 1) return (s * 1000).toFixed(0) + ' ms';
    return s.toFixed(2) + ' s';
  }
  function related(id) {
    return Array.prototype.filter.call(document.querySelectorAll('path.dep'),
      function (l) { return l.dataset.from === id || l.dataset.to === id; });
  }
  function jobs(ids) {
    return Array.prototype.filter.call(document.querySelectorAll('rect.job'),
      function (r) { return ids.indexOf(r.dataset.nodeid) >= 0; });
  }
  document.querySelectorAll('rect.job').forEach(function (bar) {
    bar.addEventListener('mouseenter', function () {
      var d = bar.dataset, lines = related(d.nodeid), ids = [];
      tip.textContent = d.nodeid + '\\n' + d.outcome + ' on ' + d.worker +
        (d.critical === 'true' ? ' (critical path)' : '') +
        '\\nsetup ' + secs(d.setup) + ' \\u00b7 call ' + secs(d.call) +
        ' \\u00b7 teardown ' + secs(d.teardown) +
        '\\nwait ' + secs(d.wait) + ' \\u00b7 total ' + secs(d.duration) +
        (d.after ? '\\nafter ' + d.after.split(' ').join(', ') : '');
      tip.hidden = false;
      lines.forEach(function (l) { l.classList.add('active');
        ids.push(l.dataset.from, l.dataset.to); });
      jobs(ids).forEach(function (r) { r.classList.add('related'); });
    });
    bar.addEventListener('mousemove', function (e) {
      tip.style.left = (e.clientX + 14) + 'px';
      tip.style.top = (e.clientY + 14) + 'px';
    });
    bar.addEventListener('mouseleave', function () {
      tip.hidden = true;
      document.querySelectorAll('.active, .related').forEach(function (el) {
        el.classList.remove('active', 'related'); });
    });
  });
  // Lets a headless browser (and the tests) see that the script ran cleanly.
  document.documentElement.dataset.timeline = 'ready';
})();
"""

_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pytest-executor timeline</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>pytest-executor timeline</h1>
<p class="summary">{summary}</p>
{legend}
</header>
<main class="chart">
{chart}
</main>
<section class="critical-path">
<h2>Critical path</h2>
{critical}
</section>
<div id="tooltip" class="tooltip" hidden></div>
<script>{script}</script>
</body>
</html>
"""
