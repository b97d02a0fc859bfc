"""Commands that change flows: schedule, signal, cancel, retry, fork."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from .. import codec, ops
from ..core import FlowStatus
from ..errors import ConfigError, FlowDefinitionError
from ..config import Settings
from ..executor.definition import definition_of
from ..storage.upkeep_commands import MISSED_POLICIES
from ..ops import FlowFilter
from .common import (ExitCode, Seconds, command, existing_store, new_store, run_async, settings, status_style,
                     style)
from .filters import filter_options, flow_filter, is_empty

__all__ = ["schedule", "signal", "cancel", "retry", "fork", "discover", "flow_class"]


def discover(modules: tuple[str, ...] | list[str]) -> list[type]:
    """The @flow_type classes of the modules (ModuleImportError names a module that cannot load)."""
    from ..runtime.worker import discover_flows

    ops.load_modules(modules)
    return discover_flows(list(modules))


def flow_class(target: str) -> type:
    """The flow class named MODULE:Class (ConfigError, ModuleImportError, FlowDefinitionError)."""
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"{target!r}: write MODULE:Class, e.g. examples.orders:OrderFlow")
    ops.load_modules([module_name])
    found: Any = sys.modules[module_name]
    for part in class_name.split("."):
        found = getattr(found, part, None)
    if found is None:
        raise FlowDefinitionError(f"module {module_name!r} has no class {class_name!r}")
    if not isinstance(found, type):
        raise FlowDefinitionError(f"{target!r} is a {type(found).__name__}, not a class: name a @flow_type class")
    return definition_of(found).cls


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.REFUSED)
@click.argument("target", metavar="MODULE:Class")
@click.option("--args", "args_json", metavar="JSON", help="the flow's fields as a JSON object (default {})")
@click.option("--args-file", type=click.File("r"), help="the flow's fields as a JSON object, from a file (- for stdin)")
@click.option("--id", "flow_id", metavar="FLOW_ID",
              help="the flow id (its idempotency key); default: a new UUID. Scheduling an id again with "
                   "the same class and arguments is the same flow")
@click.option("--delay", type=Seconds(), help="run no sooner than this from now (seconds or e.g. 10m)")
@click.option("--if-exists", type=click.Choice(("error", "keep")), default="error", show_default=True,
              help="when --id names a flow of another class or with other arguments: error (exit 7), or "
                   "keep that flow as it is")
@click.option("--queue", metavar="NAME", help="the named queue (default: the class's queue, else the default queue)")
@click.option("--priority", type=int, help="within the queue, higher runs first (default: the queue's)")
@click.option("--dedup-id", metavar="ID", help="while a flow of the queue with this id has not ended, print its "
              "flow id instead of scheduling another")
@click.option("--cron", metavar="EXPR",
              help="start such a flow at every tick of EXPR instead (UTC; 5 fields, or 6 with seconds "
                   "first), e.g. '*/5 * * * *'; see docs/schedules.md")
@click.option("--name", metavar="NAME", help="with --cron: the schedule's name (default: the class's "
                                             "flow type); the same name replaces that schedule")
@click.option("--missed", type=click.Choice(MISSED_POLICIES), default="once", show_default=True,
              help="with --cron: ticks that passed while nothing ran: skip them, run once for them "
                   "all, or run each")
def schedule(target: str, args_json: str | None, args_file: IO[str] | None, flow_id: str | None,
             delay: float | None, if_exists: str, queue: str | None, priority: int | None,
             dedup_id: str | None, cron: str | None, name: str | None, missed: str) -> int:
    """Queue a flow of MODULE:Class; prints its flow id as the last line. With --cron, create a
    schedule that starts one at every tick instead; prints its next tick.

    The arguments are checked against the class's field annotations (a datetime, Decimal, UUID,
    enum, set, tuple or nested dataclass field takes its JSON form).
    """
    if args_json is not None and args_file is not None:
        raise click.UsageError("give --args or --args-file, not both")
    if cron is None and name is not None:
        raise click.UsageError("--name names a cron schedule: give --cron too")
    if cron is not None and (flow_id is not None or delay is not None):
        raise click.UsageError("a cron schedule names each flow NAME@TIME and starts it at its tick: "
                               "leave out --id and --delay")
    if cron is not None and (queue is not None or priority is not None or dedup_id is not None):
        raise click.UsageError("a cron schedule's flows go to the default queue: leave out --queue, "
                               "--priority and --dedup-id")
    text = args_file.read() if args_file is not None else (args_json or "{}")
    cls = flow_class(target)
    flow = ops.flow_from_json(cls, _json(text, "--args-file" if args_file is not None else "--args"))
    chosen = settings()
    if cron is not None:
        return _create_schedule(chosen, flow, cron, name, missed)

    async def go() -> ops.ScheduleOutcome:
        store = await new_store(chosen)
        try:
            return await ops.schedule_flow(store, flow, flow_id, delay=delay, keep_other=if_exists == "keep",
                                           queue=queue, priority=priority, dedup_id=dedup_id)
        finally:
            await store.close()

    outcome = run_async(go())
    if outcome.kept:
        click.echo(f"flow {outcome.flow_id} exists with other arguments; kept as it is", err=True)
    elif not outcome.created and dedup_id is not None and outcome.flow_id != flow_id:
        click.echo(f"flow {outcome.flow_id} with dedup id {dedup_id!r} has not ended; no other scheduled", err=True)
    elif not outcome.created:
        click.echo(f"flow {outcome.flow_id} exists already (same class and arguments)", err=True)
    click.echo(outcome.flow_id)
    return ExitCode.OK


def _create_schedule(chosen: Settings, flow: object, cron: str, name: str | None, missed: str) -> int:
    async def go() -> ops.CronSchedule:
        store = await new_store(chosen)
        try:
            return await ops.create_schedule(store, flow, cron, name=name, missed=missed)
        finally:
            await store.close()

    created = ops.schedule_json(run_async(go()))
    click.echo(f"schedule {created['name']!r}: {created['class']} at {created['cron']!r} (UTC), missed ticks: "
               f"{created['missed']}; a running supervisor starts each flow", err=True)
    click.echo(f"next tick {created['next_tick']}: flow {created['next_flow_id']}")
    return ExitCode.OK


@command(ExitCode.USAGE, ExitCode.STORE, ExitCode.REFUSED)
@click.argument("name", metavar="NAME")
@click.option("--data", metavar="JSON", help="the payload as JSON (default null)")
@click.option("--data-file", type=click.File("rb"), help="the payload: a file's bytes (- for stdin)")
def signal(name: str, data: str | None, data_file: IO[bytes] | None) -> int:
    """Send the signal NAME to the flow that waits for it, now or later (a signal is delivered once)."""
    if data is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    payload = data_file.read() if data_file is not None else (None if data is None else _json(data, "--data"))
    chosen = settings()

    async def go() -> ops.SignalSent:
        store = await existing_store(chosen)
        try:
            return await ops.send_signal(store, name, codec.encode(payload))
        finally:
            await store.close()

    sent = run_async(go())
    if not sent.sent:
        click.echo(style(f"signal {name!r} was sent before; this one was dropped (a signal is delivered once)",
                         fg="yellow", err=True), err=True)
        return ExitCode.REFUSED
    if sent.waiting:
        click.echo(f"signal {name!r} sent: the flow waiting for it resumes")
    else:
        click.echo(f"signal {name!r} sent; no flow waits for it yet: it is kept until one does")
    return ExitCode.OK


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.REFUSED, ExitCode.DECLINED)
@click.argument("flow_id", required=False, metavar="[FLOW_ID]")
@filter_options
@click.option("--all", "everything", is_flag=True, help="every flow that has not ended (with no filter)")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def cancel(flow_id: str | None, everything: bool, yes: bool, **filters: Any) -> int:
    """Cancel FLOW_ID, or every live flow the filters match (asks first, unless --yes).

    A running flow stops at its next step boundary; a waiting one at once. Child flows are
    cancelled with their parent.
    """
    chosen_filter = flow_filter(**filters)
    if flow_id is not None and (everything or not is_empty(chosen_filter)):
        raise click.UsageError("give a FLOW_ID or filters, not both")
    if flow_id is None and not everything and is_empty(chosen_filter):
        raise click.UsageError("name a FLOW_ID, or filters (--status, --type, --since, --id, ...), or --all")
    chosen = settings()
    if flow_id is not None:
        return run_async(_cancel_one(chosen, flow_id))
    return run_async(_cancel_many(chosen, chosen_filter, yes))


async def _cancel_one(chosen: Any, flow_id: str) -> int:
    store = await existing_store(chosen)
    try:
        status = await store.cancel_flow(flow_id)
    finally:
        await store.close()
    if status == FlowStatus.RUNNING:
        click.echo(f"flow {flow_id} is running: it stops at its next step boundary")
    elif status == FlowStatus.CANCELLED:
        click.echo(f"flow {flow_id} cancelled")
    else:
        click.echo(style(f"flow {flow_id} already ended {status}: nothing to cancel", fg="yellow", err=True),
                   err=True)
        return ExitCode.REFUSED
    return ExitCode.OK


async def _cancel_many(chosen: Any, chosen_filter: FlowFilter, yes: bool) -> int:
    store = await existing_store(chosen)
    try:
        ids = await ops.matching_live_flows(store, chosen_filter)
        if not ids:
            click.echo("no live flow matches: nothing to cancel")
            return ExitCode.OK
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        if not yes:
            if not sys.stdin.isatty():
                click.echo(f"{len(ids)} flows match ({shown}); pass --yes to cancel them without a terminal "
                           "to confirm", err=True)
                return ExitCode.DECLINED
            if not click.confirm(f"cancel {len(ids)} flows ({shown})?", default=False, err=True):
                click.echo("nothing cancelled", err=True)
                return ExitCode.DECLINED
        done = await ops.cancel_flows(store, ids)
    finally:
        await store.close()
    click.echo(f"cancelled {len(done.cancelled)}; {len(done.requested)} running (they stop at their next "
               f"step boundary); {len(done.ended)} had ended already")
    return ExitCode.OK


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.REFUSED)
@click.argument("flow_id", metavar="FLOW_ID")
def retry(flow_id: str) -> int:
    """Resume a FAILED or CANCELLED flow from its failed step, as its next attempt.

    Completed steps are not run again (their journaled results replay); the failed step and
    those after it run. Failed or cancelled child flows are retried with it. A flow that timed
    out (@flow(timeout=...)) times out again: its deadline counts from its creation.
    """
    chosen = settings()

    async def go() -> tuple[Any, int]:
        store = await existing_store(chosen)
        try:
            flow = await ops.retry_flow(store, flow_id)
            return flow, sum(1 for s in await store.load_steps(flow_id) if s.status == "COMPLETE")
        finally:
            await store.close()

    flow, replayed = run_async(go())
    click.echo(f"flow {flow_id} is {status_style(flow.status)} as attempt {flow.attempt}: completed steps "
               f"replay ({replayed}), the rest runs when a worker claims it")
    return ExitCode.OK


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.REFUSED)
@click.argument("flow_id", metavar="FLOW_ID")
@click.option("--from-step", type=click.IntRange(min=0), required=True, metavar="N",
              help="the position (as inspect shows it) from which the new flow runs its steps again")
@click.option("--id", "new_flow_id", metavar="NEW_ID", help="the new flow's id (default: a new UUID)")
def fork(flow_id: str, from_step: int, new_flow_id: str | None) -> int:
    """Start a new flow with FLOW_ID's class and arguments that reuses the results of its completed
    steps before position N and runs the rest; prints the new flow's id as the last line."""
    chosen = settings()

    async def go() -> tuple[str, int]:
        store = await existing_store(chosen)
        try:
            new_id = await ops.fork_flow(store, flow_id, from_step, new_flow_id)
            return new_id, len(await store.load_steps(new_id))
        finally:
            await store.close()

    new_id, copied = run_async(go())
    click.echo(f"forked {flow_id} from step {from_step}: {copied} steps reused", err=True)
    click.echo(new_id)
    return ExitCode.OK
