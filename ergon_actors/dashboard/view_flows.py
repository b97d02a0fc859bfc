"""The flows page (the list with the command line's filters and cursor paging) and the page of
one flow (timeline, steps, crashes, history, result or error, actions)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..core import FlowRecord, FlowStatus
from ..ops import FlowDetails, event_text
from ..storage.commands import FlowPage
from .html import Context, esc, flow_link, hidden_csrf, page, pre_json, seconds, status_badge, table, when
from .svg import STATUS_ORDER, timeline_svg
from .timeline import timeline

__all__ = ["flows_page", "flow_page", "FILTER_FIELDS"]

FILTER_FIELDS = ("type", "since", "until", "id", "error")


def _info(flow: FlowRecord) -> str:
    if flow.error is not None and flow.status != FlowStatus.COMPLETE:
        return f'<span class="bad">{esc(f"{flow.error.type_name}: {flow.error.message}"[:100])}</span>'
    if flow.status == FlowStatus.SUSPENDED and flow.waiting_on:
        return f"waits for {esc(flow.waiting_on)}"
    if flow.status == FlowStatus.RUNNING:
        return f"on {esc(flow.owner)}"
    return ""


def _filter_form(ctx: Context, query: Mapping[str, str], statuses: list[str]) -> str:
    boxes = "".join(f'<label><input type="checkbox" name="status" value="{s.lower()}"'
                    f'{" checked" if s.lower() in statuses else ""}>{status_badge(s)}</label>'
                    for s in STATUS_ORDER)
    fields = "".join(f'<label>{name} <input name="{name}" value="{esc(query.get(name, ""))}" size="14"></label>'
                     for name in FILTER_FIELDS)
    oldest = " checked" if query.get("oldest") else ""
    return (f'<form class="filters" method="get" action="{ctx.url("/flows")}">{boxes}{fields}'
            f'<label><input type="checkbox" name="oldest" value="1"{oldest}>oldest first</label>'
            f'<label>per page <input name="limit" value="{esc(query.get("limit", "50"))}" size="4"></label>'
            f'<button type="submit">filter</button> <a href="{ctx.url("/flows")}">clear</a></form>')


def flows_page(ctx: Context, query: Mapping[str, str], statuses: list[str], flows: FlowPage | None,
               error: str | None, refresh: float) -> str:
    """The list; `error` explains a filter that could not be read (no flows are listed then)."""
    if error is not None or flows is None:
        listing = f'<p class="bad">{esc(error)}</p>'
    else:
        rows = [[flow_link(ctx, f.flow_id), esc(f.flow_type), status_badge(f.status), str(f.attempt),
                 when(f.created_at), when(f.updated_at), _info(f)] for f in flows.flows]
        listing = table(["flow", "class", "status", "attempt", "created (UTC)", "updated (UTC)", ""], rows, "flows")
        more = ""
        if flows.cursor is not None:
            params = {k: v for k, v in query.items() if k not in ("cursor", "status")}
            href = ctx.url("/flows", status=statuses, cursor=flows.cursor, **params)
            more = f'<a class="next" href="{href}">next page</a>'
        listing += f'<p class="facts">{len(flows.flows)} flows on this page {more}</p>'
    body = _filter_form(ctx, query, statuses) + f'<div id="live">{listing}</div>'
    return page(ctx, "flows", "Flows", body, refresh=refresh)


def _steps(d: FlowDetails) -> str:
    rows = []
    for s in d.steps:
        step = s.step
        if step.error is not None:
            outcome = f'<span class="bad">{esc(f"{step.error.type_name}: {step.error.message}")}</span>'
            if step.error.traceback:
                outcome += f"<details><summary>traceback</summary><pre>{esc(step.error.traceback)}</pre></details>"
        else:
            outcome = pre_json(s.result)
        rows.append([str(step.position), esc(step.name), status_badge(step.status), str(step.attempt),
                     str(step.tries), seconds(s.took), when(step.completed_at), outcome])
    if not rows:
        return '<p class="muted">no step recorded yet</p>'
    return table(["#", "step", "status", "attempt", "tries", "took", "completed (UTC)", "result"], rows, "steps")


def _history(d: FlowDetails) -> str:
    rows = [[str(e.seq), when(e.at), esc(e.kind), esc(event_text(e))] for e in d.history]
    return table(["seq", "at (UTC)", "event", "details"], rows, "history")


def _actions(ctx: Context, d: FlowDetails) -> str:
    if ctx.read_only:
        return '<p class="muted">read-only: actions are off</p>'
    flow = d.flow
    signal = d.wait.name if d.wait is not None and d.wait.kind == "signal" else ""

    def form(action: str) -> str:
        return (f'<form method="post" action="{ctx.url("/actions/" + action)}">{hidden_csrf(ctx)}'
                f'<input type="hidden" name="flow_id" value="{esc(flow.flow_id)}">')
    parts = [form("signal") + f'<label>signal <input name="name" value="{esc(signal)}" required></label>'
             '<label>payload (JSON) <input name="payload" value="null"></label>'
             '<button type="submit" name="do" value="signal">send signal</button></form>']
    if flow.status in (FlowStatus.PENDING, FlowStatus.RUNNING, FlowStatus.SUSPENDED):
        parts.append(form("cancel") + '<button type="submit" name="do" value="cancel">cancel</button></form>')
    if flow.status in (FlowStatus.FAILED, FlowStatus.CANCELLED):
        parts.append(form("retry") + '<button type="submit" name="do" value="retry">retry</button></form>')
    parts.append(form("fork") + '<label>fork from step <input name="from_step" value="0" size="3"></label>'
                 '<label>new id <input name="new_id" placeholder="(a new UUID)"></label>'
                 '<button type="submit" name="do" value="fork">fork</button></form>')
    return '<section class="actions"><h2>Actions</h2>' + "".join(parts) + "</section>"


def flow_page(ctx: Context, d: FlowDetails, refresh: float, message: str | None = None,
              problem: str | None = None) -> str:
    """One flow; `message` says what an action did, `problem` why it was refused."""
    flow = d.flow
    facts = [f"{status_badge(flow.status)} {esc(flow.flow_type)} · attempt {flow.attempt} · epoch {flow.epoch}",
             f"created {when(flow.created_at)}", f"started {when(d.started_at)} (queued {seconds(d.queued)})"]
    if d.ended_at is not None:
        facts.append(f"ended {when(d.ended_at)} (took {seconds(d.duration)})")
    if flow.status == FlowStatus.RUNNING:
        facts.append(f"running on {esc(flow.owner)}" + (", cancel requested" if flow.cancel_requested else ""))
    if d.wait is not None:
        facts.append(f"waits for {esc(d.wait.describe())}")
    if flow.parent_id:
        facts.append(f"parent {flow_link(ctx, flow.parent_id)}")
    children = list(dict.fromkeys(str(e.details.get("child")) for e in d.history if e.kind == "child_started"))
    if children:
        facts.append("children " + ", ".join(flow_link(ctx, child) for child in children))
    outcome = ""
    if flow.status == FlowStatus.COMPLETE:
        outcome = f"<h2>Result</h2>{pre_json(d.result)}"
    elif flow.error is not None:
        outcome = (f'<h2>Error</h2><p class="bad">{esc(f"{flow.error.type_name}: {flow.error.message}")}</p>'
                   + (f"<pre>{esc(flow.error.traceback)}</pre>" if flow.error.traceback else ""))
    crashes = table(["at (UTC)", "worker", "cause", "step", "blamed"],
                    [[when(c.at), esc(c.worker_id), esc(c.cause), esc(f"{c.position} {c.step or ''}"),
                      "yes" if c.alone else "no"] for c in flow.crashes]) if flow.crashes else ""
    banner = (f'<p class="flash ok">{esc(message)}</p>' if message else "") + (
        f'<p class="flash bad">{esc(problem)}</p>' if problem else "")
    live = (f'<div id="live"><p class="facts">{" · ".join(facts)}</p>{_actions(ctx, d)}'
            f"<section><h2>Timeline</h2>{timeline_svg(timeline(d, time.time()))}</section>"
            f"{outcome}<section><h2>Steps</h2>{_steps(d)}</section>"
            + (f"<section><h2>Crashes</h2>{crashes}</section>" if crashes else "")
            + f"<section><h2>Arguments</h2>{pre_json(d.args)}</section>"
            f"<section><h2>Event history</h2>{_history(d)}</section></div>")
    title = f"Flow {flow.flow_id}"
    return page(ctx, "flows", title, banner + live,
                refresh=refresh if flow.status not in ("COMPLETE", "FAILED", "CANCELLED") else refresh * 2)
