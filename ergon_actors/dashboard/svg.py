"""Pictures drawn as inline SVG: flows by status over time, and a flow's timeline. Every text
in them is escaped."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from .timeline import Timeline

__all__ = ["status_chart", "timeline_svg", "STATUS_ORDER"]

STATUS_ORDER = ("PENDING", "RUNNING", "SUSPENDED", "COMPLETE", "FAILED", "CANCELLED")
Sample = tuple[float, dict[str, int]]


def _seconds(span: float) -> str:
    if span < 1:
        return f"{span * 1000:.0f}ms"
    if span < 120:
        return f"{span:.1f}s"
    if span < 7200:
        return f"{span / 60:.1f}m"
    return f"{span / 3600:.1f}h"


def status_chart(samples: Sequence[Sample], width: int = 720, height: int = 220) -> str:
    """One line per status over the sampled times (the newest sample at the right edge)."""
    left, right, top, bottom = 48, 110, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'role="img" aria-label="flows by status over time">']
    if not samples:
        parts.append(f'<text x="{left}" y="{top + plot_h / 2}" class="muted">no samples yet</text></svg>')
        return "".join(parts)
    t0, t1 = samples[0][0], samples[-1][0]
    span = max(t1 - t0, 1e-6)
    peak = max(1, *(counts.get(s, 0) for _, counts in samples for s in STATUS_ORDER))
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot"/>')
    for i in range(5):  # horizontal grid lines with their counts
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{value:.0f}</text>')
    for i in range(5):
        x = left + plot_w * i / 4
        ago = span * (4 - i) / 4
        label = "now" if i == 4 else f"-{_seconds(ago)}"
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" class="axis" text-anchor="middle">{label}</text>')
    for n, status in enumerate(STATUS_ORDER):
        points = " ".join(f"{left + plot_w * (t - t0) / span if t1 > t0 else left + plot_w:.1f},"
                          f"{top + plot_h - plot_h * counts.get(status, 0) / peak:.1f}" for t, counts in samples)
        name = status.lower()
        parts.append(f'<polyline class="line s-{name}" points="{points}" fill="none"/>')
        y = top + 14 + n * 18
        latest = samples[-1][1].get(status, 0)
        parts.append(f'<rect x="{left + plot_w + 12}" y="{y - 9}" width="10" height="10" class="key s-{name}"/>'
                     f'<text x="{left + plot_w + 28}" y="{y}" class="legend">{name} {latest}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(t: Timeline, width: int = 900, origin: str = "created") -> str:
    """Lanes (a flow's waits, each worker that held it, operator acts; or a chaos run's faults)
    against time since `origin`."""
    left, right, top, lane_h = 200, 16, 22, 28
    plot_w = width - left - right
    height = top + lane_h * len(t.lanes) + 24
    span = max(t.end - t.start, 1e-6)

    def x(at: float) -> float:
        return left + plot_w * min(max(at - t.start, 0.0), span) / span

    row = {lane: i for i, lane in enumerate(t.lanes)}
    parts = [f'<svg class="timeline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'role="img" aria-label="flow timeline">']
    for i in range(6):
        at = t.start + span * i / 5
        parts.append(f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{top - 6}" y2="{height - 20}" class="grid"/>'
                     f'<text x="{x(at):.1f}" y="{top - 10}" class="axis" text-anchor="middle">'
                     f'+{_seconds(at - t.start)}</text>')
    for lane, i in row.items():
        y = top + i * lane_h
        parts.append(f'<text x="{left - 8}" y="{y + lane_h / 2 + 4}" class="lane" text-anchor="end">'
                     f'{escape(lane if len(lane) <= 28 else "…" + lane[-27:])}</text>'
                     f'<line x1="{left}" x2="{left + plot_w}" y1="{y + lane_h}" y2="{y + lane_h}" class="grid"/>')
    for bar in sorted(t.bars, key=lambda b: b.kind != "held"):  # a worker's hold under its steps
        y = top + row[bar.lane] * lane_h + (2 if bar.kind == "held" else 6)
        h = lane_h - (4 if bar.kind == "held" else 12)
        w = max(x(bar.end) - x(bar.start), 2.0)
        title = f"{bar.label}: {_seconds(bar.end - bar.start)}" + (", still going" if bar.open else "")
        parts.append(f'<rect x="{x(bar.start):.1f}" y="{y}" width="{w:.1f}" height="{h}" '
                     f'class="bar b-{escape(bar.kind)}{" open" if bar.open else ""}">'
                     f"<title>{escape(title)}</title></rect>")
    for mark in t.marks:
        cx, cy = x(mark.at), top + row[mark.lane] * lane_h + lane_h / 2
        title = f"<title>{escape(mark.label)} at +{_seconds(mark.at - t.start)}</title>"
        if mark.kind == "crashed":
            parts.append(f'<path d="M{cx - 6:.1f},{cy - 6:.1f}l12,12m0,-12l-12,12" class="mark m-crashed">'
                         f"{title}</path>")
        else:
            parts.append(f'<path d="M{cx:.1f},{cy - 7:.1f}l6,7l-6,7l-6,-7z" class="mark m-{escape(mark.kind)}">'
                         f"{title}</path>")
    parts.append(f'<text x="{left}" y="{height - 4}" class="axis">{escape(origin)} '
                 f'{escape(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t.start)))} UTC; '
                 f'{_seconds(span)} shown</text></svg>')
    return "".join(parts)
