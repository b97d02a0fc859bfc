"""The overview page: flows by status over time, rates, failures, quarantined flows, supervisors
and their actors, the store's health."""

from __future__ import annotations

import time

from ..core import FlowRecord, FlowStatus
from ..runtime.snapshot import Snapshot
from .data import Overview
from .html import Context, esc, flow_link, page, status_badge, table, when
from .svg import STATUS_ORDER, status_chart

__all__ = ["overview_page"]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 60:.1f}/min"


def _flows(ctx: Context, flows: tuple[FlowRecord, ...], empty: str) -> str:
    if not flows:
        return f'<p class="muted">{esc(empty)}</p>'
    rows = [[flow_link(ctx, f.flow_id), esc(f.flow_type), when(f.updated_at),
             esc(f"{f.error.type_name}: {f.error.message}"[:160]) if f.error else ""] for f in flows]
    return table(["flow", "class", "updated (UTC)", "error"], rows)


def _supervisor(s: Snapshot) -> str:
    j = s.journal
    store = "ok" if j.store_failing_since is None else (
        f"failing since {time.strftime('%H:%M:%S', time.localtime(j.store_failing_since))}: {j.store_error}")
    head = (f"<h3>supervisor pid {s.pid} on {esc(s.host)} · {esc(s.state)} since "
            f"{esc(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.started)))}</h3>"
            f'<p class="facts">restarts {s.restarts} · worker crashes {s.crashes} · quarantined {s.quarantined} · '
            f"recycled {s.recycles} · malformed dropped {s.dropped} · journal: {j.commits} commits, "
            f"{j.commands_per_commit:.1f} commands/commit, {j.fenced} writes fenced · store "
            f'<span class="{"ok" if j.store_failing_since is None else "bad"}">{esc(store)}</span></p>')
    rows = []
    for a in s.actors:
        beat = "-" if a.heartbeat_age is None else f"{a.heartbeat_age:.1f}s ago"
        rss = "-" if a.rss_bytes is None else f"{a.rss_bytes / 2**20:.0f} MB"
        cpu = "-" if a.cpu_percent is None else f"{a.cpu_percent:.0f}%"
        state = '<span class="ok">ready</span>' if a.ready else (
            '<span class="warn">starting</span>' if a.alive else '<span class="bad">down</span>')
        causes = ", ".join(f"{cause} {n}" for cause, n in sorted(a.causes.items()))
        restarts = f"{a.restarts}" + (f" ({esc(causes)})" if causes else "")
        rows.append([esc(a.name), esc(a.pid or "-"), state, restarts, beat, rss, cpu,
                     esc(", ".join(str(c) for c in a.exit_codes) or "-")])
    return head + table(["actor", "pid", "state", "restarts", "heartbeat", "RSS", "CPU", "exit codes"], rows,
                        "actors")


def overview_page(ctx: Context, o: Overview, refresh: float) -> str:
    if o.store_error is not None:
        health = f'<span class="bad">cannot read the store: {esc(o.store_error)}</span>'
    else:
        health = f'<span class="ok">ok</span> (counts read in {(o.store_latency or 0) * 1000:.1f} ms)'
    total = sum(o.counts.get(s, 0) for s in FlowStatus)
    tiles = "".join(f'<a class="tile s-{s.lower()}" href="{ctx.url("/flows", status=s.lower())}">'
                    f"<b>{o.counts.get(s, 0)}</b>{status_badge(s)}</a>" for s in STATUS_ORDER)
    figures = (f'<p class="facts">{total} flows · completed {_rate(o.completed_rate)} · failed '
               f"{_rate(o.failed_rate)} (last minute) · quarantined {o.counts.get('quarantined', 0)} · "
               f"due now {o.counts.get('due', 0)} · store {health}</p>")
    supervisors = "".join(_supervisor(s) for s in o.supervisors) or (
        '<p class="muted">no supervisor of this store is running on this host</p>')
    body = (f'<div id="live"><section class="tiles">{tiles}</section>{figures}'
            f"<section><h2>Flows by status over time</h2>{status_chart(o.samples)}</section>"
            f"<section><h2>Supervisors and workers</h2>{supervisors}</section>"
            f"<section><h2>Recent failures</h2>{_flows(ctx, o.failures, 'no failed flow')}</section>"
            f"<section><h2>Quarantined (poison) flows</h2>"
            f"{_flows(ctx, o.quarantined, 'no quarantined flow')}</section></div>")
    return page(ctx, "overview", "Overview", body, refresh=refresh)
