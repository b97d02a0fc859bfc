"""The chaos page: the newest chaos reports, each with its fault timeline and recovery times."""

from __future__ import annotations

from typing import Any

from .html import Context, esc, page, table, when
from .svg import timeline_svg
from .timeline import Bar, Mark, Timeline

__all__ = ["chaos_page", "fault_timeline"]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def fault_timeline(report: dict[str, Any]) -> Timeline:
    """The report's faults as marks on one lane per kind, over its fault phase."""
    elapsed = _num(report.get("elapsed"))
    start = _num(report.get("finished_at")) - elapsed
    faults = [f for f in report.get("faults") or [] if isinstance(f, dict)]
    lanes = tuple(dict.fromkeys(str(f.get("kind")) for f in faults)) or ("faults",)
    marks = tuple(Mark(str(f.get("kind")), start + _num(f.get("at")), "fault",
                       f"{f.get('kind')} hit {f.get('target')}: {f.get('affected')} flows running"
                       + (f" ({f.get('note')})" if f.get("note") else "")) for f in faults)
    phase = Bar(lanes[0], start, start + _num(report.get("duration")), "held", "fault phase")
    end = max([start + elapsed, start + 0.001] + [m.at for m in marks])
    return Timeline(start, end, lanes, (phase,), marks)


def _recovery(stats: Any) -> list[str]:
    if not isinstance(stats, dict) or not stats.get("samples"):
        return ["-", "-", "-", "0"]
    return [f"{_num(stats.get(k)):.3f}s" for k in ("p50", "p99", "max")] + [esc(stats.get("samples"))]


def _report(report: dict[str, Any]) -> str:
    ok = report.get("ok") is True
    verdict = '<span class="ok">no violation</span>' if ok else (
        f'<span class="bad">{len(report.get("violations") or [])} violations</span>')
    statuses = ", ".join(f"{esc(k).lower()} {esc(v)}" for k, v in (report.get("statuses") or {}).items())
    head = (f"<h2>{esc(report.get('module'))} · {when(_num(report.get('finished_at')))} UTC · {verdict}</h2>"
            f'<p class="facts">{esc(report.get("flows"))} flows ({statuses}) · {esc(report.get("workers"))} workers '
            f"· store {esc(report.get('store'))} · seed {esc(report.get('seed'))} · "
            f"{len(report.get('faults') or [])} faults in {_num(report.get('duration')):.1f}s · "
            f"{esc(report.get('re_executed'))} steps run again · {esc(report.get('fenced'))} writes fenced · "
            f"elapsed {_num(report.get('elapsed')):.1f}s</p>")
    by_kind = report.get("recovery_by_kind") or {}
    rows = [["all faults", *_recovery(report.get("recovery"))]]
    rows += [[esc(kind), *_recovery(stats)] for kind, stats in by_kind.items()]
    recovery = table(["fault", "recovery p50", "p99", "max", "samples"], rows)
    violations = ""
    if not ok:
        items = "".join(f"<li>{esc(v.get('kind'))}: flow {esc(v.get('flow_id'))}: {esc(v.get('detail'))}</li>"
                        for v in (report.get("violations") or [])[:50] if isinstance(v, dict))
        violations = f'<ul class="bad">{items}</ul>'
    return (f'<section class="report">{head}{timeline_svg(fault_timeline(report), origin="started")}'
            f"{recovery}{violations}</section>")


def chaos_page(ctx: Context, reports: list[dict[str, Any]], folder: str) -> str:
    if not reports:
        body = (f'<p class="muted">no chaos report in {esc(folder)} yet: run '
                "<code>python -m ergon_actors chaos MODULE</code></p>")
    else:
        body = f'<p class="facts">the newest {len(reports)} reports from {esc(folder)}</p>' + "".join(
            _report(r) for r in reports)
    return page(ctx, "chaos", "Chaos runs", body)
