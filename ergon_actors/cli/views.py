"""Commands that show flows: status, list, inspect. None of them writes to the store."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from .. import ops
from ..config import public_store_url
from ..core import FlowRecord, FlowStatus
from ..core.queues import QueueState
from ..ops import FlowDetails, StepDetails, iso
from ..storage.crashes import how
from ..storage.events import FlowEvent
from .common import (ExitCode, command, echo_json, existing_store, json_option, module_option, run_async,
                     settings, status_style, style, table)
from .filters import filter_options, flow_filter

if TYPE_CHECKING:
    from ..runtime.snapshot import Snapshot

__all__ = ["status", "list_command", "inspect"]


def _legacy(flow: FlowRecord) -> dict[str, Any]:
    """A flow as `status --json` has always shown it."""
    return {"flow_id": flow.flow_id, "class": flow.flow_type, "status": flow.status,
            "result": ops.decode(flow.result),
            "error": f"{flow.error.type_name}: {flow.error.message}" if flow.error else None}


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE)
@json_option
@click.option("--limit", type=click.IntRange(0, 10_000), default=1000, show_default=True,
              help="flows listed with --json, newest first (the `list` command pages through all)")
@module_option
def status(as_json: bool, limit: int, modules: tuple[str, ...]) -> int:
    """Flows by status, the workers holding flows, and the supervisors running on the store on
    this host: their actors, pids, restarts and figures."""
    from ..runtime import rundir

    ops.load_modules(modules)
    chosen = settings()

    async def go() -> tuple[dict[str, int], dict[str, int], list[FlowRecord], list[QueueState]]:
        store = await existing_store(chosen)
        try:
            counts = await store.count_flows()
            queues = await store.queue_stats()
            page = await ops.list_flows(store, limit=limit) if as_json and limit else None
            workers: dict[str, int] = {}
            async for flow in ops.iter_flows(store, ops.FlowFilter(statuses=(FlowStatus.RUNNING,))):
                workers[flow.owner or "?"] = workers.get(flow.owner or "?", 0) + 1
            return counts, workers, list(page.flows) if page else [], queues
        finally:
            await store.close()

    counts, workers, flows, queues = run_async(go())
    url = public_store_url(chosen.store)
    supervisors = [s for s in rundir.snapshots() if s.store == url]
    if as_json:
        echo_json(ops.to_json({"counts": counts, "workers": workers, "flows": [_legacy(f) for f in flows],
                               "queues": [_queue(q) for q in queues],
                               "supervisors": [s.to_dict() for s in supervisors]}))
        return ExitCode.OK
    total = sum(v for k, v in counts.items() if k not in ("due", "quarantined"))
    click.echo(f"store: {url}\nflows: {total}")
    for name in FlowStatus:
        click.echo(f"  {name.lower():<10} {counts.get(name, 0)}")
    click.echo(f"  {'of which quarantined as poison':<10} {counts.get('quarantined', 0)}")
    click.echo(f"  {'due now':<10} {counts.get('due', 0)}")
    click.echo(f"named queues: {len(queues)}")
    for q in queues:
        limits = "limits not declared" if q.limits is None else q.limits.describe()
        starts = f", {q.recent_starts} started in the last {q.limits.rate_period:g}s" if (
            q.limits is not None and q.limits.rate_limit is not None) else ""
        click.echo(f"  {q.name}: {q.running} running, {q.due} due, {q.waiting} waiting{starts} ({limits})")
    click.echo(f"workers holding flows: {len(workers)}")
    for owner, n in sorted(workers.items()):
        click.echo(f"  {owner}: {n}")
    click.echo(f"supervisors running on this store here: {len(supervisors)}")
    for snap in supervisors:
        _print_supervisor(snap)
    return ExitCode.OK


def _queue(q: QueueState) -> dict[str, Any]:
    """A named queue as `status --json` shows it."""
    limits = None if q.limits is None else {"concurrency": q.limits.concurrency,
                                            "worker_concurrency": q.limits.worker_concurrency,
                                            "key_concurrency": q.limits.key_concurrency,
                                            "rate_limit": q.limits.rate_limit, "rate_period": q.limits.rate_period}
    return {"name": q.name, "limits": limits, "running": q.running, "due": q.due, "waiting": q.waiting,
            "recent_starts": q.recent_starts}


def _print_supervisor(snap: Snapshot) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.started))
    journal = snap.journal
    store = "ok"
    if journal.store_failing_since is not None:
        since = time.strftime("%H:%M:%S", time.localtime(journal.store_failing_since))
        store = f"failing since {since}: {journal.store_error}"
    click.echo(f"  pid {snap.pid} on {snap.host}, {snap.state} since {started}, {snap.restarts} restarts, "
               f"{snap.dropped} malformed messages dropped")
    click.echo(f"    worker crashes recorded on flows: {snap.crashes}, flows quarantined: {snap.quarantined}, "
               f"workers recycled: {snap.recycles}")
    click.echo(f"    journal: {journal.commits} commits, {journal.commands_per_commit:.1f} commands per commit, "
               f"{journal.fenced} writes refused, {journal.malformed} malformed messages dropped; store {store}")
    click.echo(f"    {'actor':<10} {'pid':>7} {'ready':<5} {'restarts':>8}  {'heartbeat':>9} {'rss MB':>7} "
               f"{'cpu %':>6}  exit codes")
    for a in snap.actors:
        beat = "-" if a.heartbeat_age is None else f"{a.heartbeat_age:.1f}s ago"
        rss = "-" if a.rss_bytes is None else f"{a.rss_bytes / 2**20:.0f}"
        cpu = "-" if a.cpu_percent is None else f"{a.cpu_percent:.0f}"
        click.echo(f"    {a.name:<10} {a.pid or '-':>7} {'yes' if a.ready else 'no':<5} {a.restarts:>8}  {beat:>9} "
                   f"{rss:>7} {cpu:>6}  {', '.join(str(c) for c in a.exit_codes) or '-'}")


def _when(seconds: float | None) -> str:
    text = iso(seconds)
    return "-" if text is None else text[:23].replace("T", " ")


def _info(flow: FlowRecord) -> str:
    if flow.error is not None and flow.status != FlowStatus.COMPLETE:
        return style(f"{flow.error.type_name}: {flow.error.message}"[:60], fg="red")
    if flow.status == FlowStatus.SUSPENDED and flow.waiting_on:
        return f"waits for {flow.waiting_on}"
    if flow.status == FlowStatus.RUNNING:
        return f"on {flow.owner}"
    return ""


@command(ExitCode.USAGE, ExitCode.STORE, name="list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="flows per page")
@click.option("--cursor", metavar="CURSOR", help="continue after a previous page (its last line names the cursor)")
@click.option("--oldest-first", is_flag=True, help="oldest first (default: newest first)")
@click.option("--all", "everything", is_flag=True, help="every matching flow, page after page")
@json_option
@click.option("--jsonl", is_flag=True, help="one JSON object per flow and line")
def list_command(limit: int, cursor: str | None, oldest_first: bool, everything: bool, as_json: bool,
                 jsonl: bool, **filters: Any) -> int:
    """Flows matching the filters, newest first, a page at a time."""
    chosen_filter = flow_filter(**filters)
    chosen = settings()

    async def go() -> int:
        store = await existing_store(chosen)
        try:
            return await _pages(store, chosen_filter, limit, cursor, not oldest_first, everything, as_json, jsonl)
        finally:
            await store.close()

    return run_async(go())


async def _pages(store: Any, chosen_filter: ops.FlowFilter, limit: int, cursor: str | None, newest: bool,
                 everything: bool, as_json: bool, jsonl: bool) -> int:
    shown: list[FlowRecord] = []
    while True:
        page = await ops.list_flows(store, chosen_filter, newest_first=newest, limit=limit, cursor=cursor)
        if jsonl:
            for flow in page.flows:
                echo_json(ops.flow_summary(flow), lines=True)
        else:
            shown += page.flows
        cursor = page.cursor
        if not everything or cursor is None:
            break
    if as_json:
        echo_json({"flows": [ops.flow_summary(f) for f in shown], "cursor": cursor})
    elif not jsonl:
        rows = [[f.flow_id, f.flow_type, status_style(f.status), str(f.attempt), _when(f.created_at),
                 _when(f.updated_at), _info(f)] for f in shown]
        if rows:
            click.echo(table(["FLOW_ID", "CLASS", "STATUS", "ATTEMPT", "CREATED (UTC)", "UPDATED (UTC)", ""], rows))
        click.echo(f"{len(shown)} flows" + (f"; next page: --cursor {cursor}" if cursor else ""), err=True)
    return ExitCode.OK


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE)
@click.argument("flow_id", metavar="FLOW_ID")
@json_option
@click.option("--history", is_flag=True, help="show the flow's event history too")
@click.option("--follow", "-f", is_flag=True, help="then print each new event until the flow ends")
@module_option
def inspect(flow_id: str, as_json: bool, history: bool, follow: bool, modules: tuple[str, ...]) -> int:
    """One flow: times, what it waits for, its steps (attempts, durations, results, tracebacks)."""
    ops.load_modules(modules)
    chosen = settings()

    async def go() -> int:
        store = await existing_store(chosen)
        try:
            details = await ops.inspect_flow(store, flow_id)
            if as_json:
                echo_json(ops.to_json(details.to_json()), lines=follow)
            else:
                _show(details, history or follow)
            if follow:
                after = details.history[-1].seq if details.history else 0
                async for event in ops.follow_history(store, flow_id, after=after):
                    _event(event, as_json)
        finally:
            await store.close()
        return ExitCode.OK

    return run_async(go())


def _event(event: FlowEvent, as_json: bool) -> None:
    if as_json:
        echo_json(ops.event_json(event), lines=True)
        return
    click.echo(f"  {event.seq:>4} {_when(event.at)}  {style(event.kind, bold=True)} {ops.event_text(event)}".rstrip())


def _show(d: FlowDetails, history: bool) -> None:
    flow = d.flow
    pinned = "" if flow.version is None else f", version {flow.version}"
    click.echo(f"flow {style(flow.flow_id, bold=True)} ({flow.flow_type}) {status_style(flow.status)}, "
               f"attempt {flow.attempt}, epoch {flow.epoch}{pinned}")
    click.echo(f"  created  {_when(flow.created_at)}")
    if d.started_at is not None:
        click.echo(f"  started  {_when(d.started_at)}  (queued {d.queued:.3f}s)")
    if d.ended_at is not None:
        click.echo(f"  ended    {_when(d.ended_at)}  (took {d.duration:.3f}s)")
    if flow.status == FlowStatus.RUNNING:
        click.echo(f"  running  on {flow.owner} (lease until {_when(flow.lease_expires)})"
                   + (", cancel requested" if flow.cancel_requested else ""))
    if d.wait is not None:
        click.echo(f"  waits for {d.wait.describe()}")
    if flow.parent_id:
        click.echo(f"  parent   {flow.parent_id}")
    click.echo(f"  args: {d.args!r}")
    for s in d.steps:
        step = s.step
        outcome = _outcome(s)
        took = f"{s.took:.3f}s" if s.took is not None else "-"
        retry = f", retry at {_when(step.retry_at)}" if step.retry_at else ""
        pad = " " * (8 - len(step.status))  # the status may carry colour codes
        click.echo(f"  step {step.position:>3} {step.name:<24} {status_style(step.status)}{pad} attempt "
                   f"{step.attempt} try {step.tries} took {took}{retry}: {outcome}")
        if step.error is not None and step.error.traceback and step.retry_at is None:
            click.echo(_indent(step.error.traceback))
    for crash in flow.crashes:
        where = f"step {crash.position}" + (f" ({crash.step})" if crash.step else "")
        click.echo(style(f"  crash at {_when(crash.at)}: {how(crash)} ({crash.cause}) in {where}, worker "
                         f"{crash.worker_id}" + (", blamed (it ran alone)" if crash.alone else ""), fg="yellow"))
    if flow.status == FlowStatus.COMPLETE:
        click.echo(f"  result: {d.result!r}")
    elif flow.error is not None:
        click.echo(style(f"  error: {flow.error.type_name}: {flow.error.message}", fg="red"))
        shown = {(s.step.error.type, s.step.error.message) for s in d.steps if s.step.error is not None}
        if flow.error.traceback and (flow.error.type, flow.error.message) not in shown:
            click.echo(_indent(flow.error.traceback))
    if history:
        click.echo("  history:")
        for event in d.history:
            _event(event, False)


def _outcome(s: StepDetails) -> str:
    step = s.step
    if step.error is not None:
        return style(f"{step.error.type_name}: {step.error.message}", fg="red")
    value = None if s.result is None else s.result.value
    if step.name.startswith(("timer:", "deadline:")) and isinstance(value, float):
        return f"until {iso(value)}"  # a timer's or a signal wait's journaled time
    return repr(s.result)


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.rstrip().splitlines())
