"""What operators do to cron schedules (create, list, pause, resume, delete) and to old flows
(prune). The command line calls these; they take an open store (storage.open_store)."""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError
from ..executor.definition import definition_of, encode_args
from ..storage.base import LogBase
from ..storage.schedules import TERMINAL_STATUSES, check_cron, next_tick, prune_all, tick_id
from ..storage.upkeep_commands import MISSED_POLICIES, CronSchedule
from .values import decode, iso

__all__ = ["create_schedule", "list_schedules", "pause_schedule", "resume_schedule", "delete_schedule",
           "schedule_json", "prune_flows", "CronSchedule"]


async def create_schedule(store: LogBase, flow: object, cron: str, *, name: str | None = None,
                          missed: str = "once") -> CronSchedule:
    """Start a flow like `flow` (a @flow_type instance: its class and arguments) at every tick
    of `cron` (UTC; 5 fields, or 6 with seconds first), each with flow id NAME@TIME. An
    existing schedule of that name is replaced (the same values change nothing).

    Args:
        name: the schedule's name; default: the flow's type name.
        missed: ticks that passed while nothing ran: "skip" them, run "once" for all of them
            (the latest), or run "all" of them.

    Raises:
        ConfigError: a cron expression or missed policy that is not valid.
        SerializationError: an argument cannot be stored.
    """
    check_cron(cron)
    if missed not in MISSED_POLICIES:
        raise ConfigError(f"missed policy {missed!r}: one of {', '.join(MISSED_POLICIES)}")
    flow_type = definition_of(type(flow)).name
    return await store.put_schedule(name or flow_type, cron, flow_type, encode_args(flow), missed)


async def list_schedules(store: LogBase) -> list[CronSchedule]:
    """Every schedule, by name."""
    return await store.list_schedules()


async def pause_schedule(store: LogBase, name: str) -> CronSchedule:
    """Stop starting flows until resumed (ScheduleNotFoundError if there is no such schedule)."""
    found = await store.change_schedule(name, "pause")
    assert found is not None  # only a delete answers None
    return found


async def resume_schedule(store: LogBase, name: str) -> CronSchedule:
    """Start flows again from the next tick; the ticks while paused start none."""
    found = await store.change_schedule(name, "resume")
    assert found is not None
    return found


async def delete_schedule(store: LogBase, name: str) -> None:
    """Delete a schedule; the flows it started are kept."""
    await store.change_schedule(name, "delete")


def schedule_json(s: CronSchedule, now: float | None = None) -> dict[str, Any]:
    """A schedule as JSON: its arguments decoded, times in ISO 8601, its next tick's flow id."""
    following = None if s.paused else next_tick([s], time.time() if now is None else now)
    return {"name": s.name, "cron": s.cron, "class": s.flow_type, "args": decode(s.args), "missed": s.missed,
            "paused": s.paused, "last_tick": iso(s.last_tick), "next_tick": iso(following),
            "next_flow_id": None if following is None else tick_id(s.name, following), "revision": s.revision,
            "created_at": iso(s.created_at)}


async def prune_flows(store: LogBase, older_than: float, statuses: tuple[str, ...] = TERMINAL_STATUSES, *,
                      now: float | None = None) -> int:
    """Delete the flows of `statuses` (ended ones only) that ended more than `older_than`
    seconds ago, with their steps and history; a flow whose parent has not ended is kept.
    Returns how many were deleted. On SQLite the space they took goes back to the file system.

    Raises:
        ConfigError: a status that has not ended, or a negative age.
    """
    if older_than < 0:
        raise ConfigError(f"--older-than must be >= 0, got {older_than}")
    live = [s for s in statuses if s not in TERMINAL_STATUSES]
    if live or not statuses:
        raise ConfigError(f"prune deletes ended flows only (complete, failed, cancelled), not "
                          f"{', '.join(s.lower() for s in live) or 'nothing'}")
    return await prune_all(store.execute, (time.time() if now is None else now) - older_than, statuses)
