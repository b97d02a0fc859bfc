"""Commands for cron schedules and retention: schedules (list, pause, resume, delete) and prune.
`schedule --cron` (in flows.py) creates a schedule."""

from __future__ import annotations

import time

import click

from .. import ops
from ..config import Settings
from ..storage.schedules import TERMINAL_STATUSES
from .common import (ExitCode, Seconds, command, echo_json, existing_store, json_option, module_option, run_async,
                     settings, style, table)

__all__ = ["schedules", "prune"]

ACTIONS = ("list", "pause", "resume", "delete")


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE)
@click.argument("action", type=click.Choice(ACTIONS), default="list")
@click.argument("name", required=False, metavar="[NAME]")
@json_option
@module_option
def schedules(action: str, name: str | None, as_json: bool, modules: tuple[str, ...]) -> int:
    """List the cron schedules, or pause, resume or delete the schedule NAME.

    A paused schedule starts no flow; resuming starts from the next tick (the ticks while it
    was paused start none). Deleting a schedule keeps the flows it started.
    """
    if (action == "list") != (name is None):
        raise click.UsageError("list takes no NAME" if action == "list" else f"{action} needs the schedule's NAME")
    ops.load_modules(modules)
    chosen = settings()

    async def go() -> list[ops.CronSchedule]:
        store = await existing_store(chosen)
        try:
            if name is None:
                return await ops.list_schedules(store)
            if action == "delete":
                await ops.delete_schedule(store, name)
                return []
            change = ops.pause_schedule if action == "pause" else ops.resume_schedule
            return [await change(store, name)]
        finally:
            await store.close()

    found = [ops.schedule_json(s) for s in run_async(go())]
    if action == "delete":
        click.echo(f"schedule {name!r} deleted; the flows it started are kept")
    elif as_json:
        echo_json(ops.to_json(found if action == "list" else found[0]))
    elif action != "list":
        click.echo(f"schedule {name!r} {action}d" + ("" if found[0]["paused"] else
                                                    f"; next tick {found[0]['next_tick']}"))
    elif not found:
        click.echo("no schedules (create one with: schedule MODULE:Class --cron EXPR)")
    else:
        click.echo(table(("NAME", "CRON", "CLASS", "MISSED", "STATE", "NEXT TICK (UTC)"),
                         [(s["name"], s["cron"], s["class"], s["missed"],
                           style("paused", fg="yellow") if s["paused"] else "active", s["next_tick"] or "-")
                          for s in found]))
    return ExitCode.OK


def _statuses(text: str) -> tuple[str, ...]:
    statuses = tuple(dict.fromkeys(ops.parse_status(part) for part in text.split(",") if part.strip()))
    live = [s.lower() for s in statuses if s not in TERMINAL_STATUSES]
    if live or not statuses:
        raise click.BadParameter(f"prune deletes ended flows only: complete, failed, cancelled (not "
                                 f"{', '.join(live) or 'nothing'})", param_hint="--status")
    return statuses


@command(ExitCode.USAGE, ExitCode.STORE)
@click.option("--older-than", required=True, type=Seconds(), metavar="AGE",
              help="delete flows that ended longer ago than this (seconds, or e.g. 30d, 12h)")
@click.option("--status", "status_text", default="complete,failed,cancelled", show_default=True,
              metavar="STATUS,...", help="which ended flows to delete")
@json_option
def prune(older_than: float, status_text: str, as_json: bool) -> int:
    """Delete ended flows (with their steps and history) that ended more than --older-than ago.

    A flow whose parent has not ended is kept. A pruned flow's id is free again. On SQLite the
    space goes back to the file system; `run --retention AGE` prunes as it runs.
    """
    statuses = _statuses(status_text)
    chosen = settings()
    before, deleted, took = _prune(chosen, older_than, statuses)
    if as_json:
        echo_json({"deleted": deleted, "ended_before": ops.iso(before), "statuses": list(statuses),
                   "seconds": round(took, 3)})
    else:
        click.echo(f"deleted {deleted} flows ({', '.join(s.lower() for s in statuses)}) that ended before "
                   f"{ops.iso(before)} in {took:.1f}s")
    return ExitCode.OK


def _prune(chosen: Settings, older_than: float, statuses: tuple[str, ...]) -> tuple[float, int, float]:
    now = time.time()

    async def go() -> int:
        store = await existing_store(chosen)
        try:
            return await ops.prune_flows(store, older_than, statuses, now=now)
        finally:
            await store.close()

    started = time.monotonic()
    deleted = run_async(go())
    return now - older_than, deleted, time.monotonic() - started
