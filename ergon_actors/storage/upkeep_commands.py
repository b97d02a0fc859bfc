"""The journal's commands for cron schedules and retention, and the schedule record they keep.

They travel like every other command (storage.commands lists them in its union and gives each
its ext code).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CronSchedule", "PutSchedule", "ListSchedules", "ChangeSchedule", "FireSchedule", "PruneFlows",
           "MISSED_POLICIES", "SCHEDULE_ACTIONS"]

MISSED_POLICIES = ("skip", "once", "all")
"""What happens to the ticks of a schedule that passed while nothing ran: none of them starts a
flow, the latest of them does, or each of them does."""

SCHEDULE_ACTIONS = ("pause", "resume", "delete")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron schedule: one flow of flow_type with args at each tick of `cron` (UTC).

    last_tick: ticks up to this time (seconds since the epoch) are done: each started its flow
    or was passed over by the `missed` policy. revision: bumped when the schedule is replaced,
    so ticks computed from its earlier form are not fired.
    """

    name: str
    cron: str
    flow_type: str
    args: bytes
    missed: str
    paused: bool
    last_tick: float
    revision: int
    created_at: float


@dataclass(frozen=True, slots=True)
class PutSchedule:
    """Create the schedule `name`, or replace its cron, flow and policy (a new revision that
    keeps its last tick and whether it is paused; the same values change nothing).
    Result: the CronSchedule. A new schedule's first tick is the first after now."""

    name: str
    cron: str
    flow_type: str
    args: bytes
    missed: str = "once"


@dataclass(frozen=True, slots=True)
class ListSchedules:
    """Result: every CronSchedule, by name."""


@dataclass(frozen=True, slots=True)
class ChangeSchedule:
    """Pause, resume or delete the schedule `name`. Result: the CronSchedule (None once deleted);
    ScheduleNotFoundError if there is none. Resuming starts from now: ticks that passed while it
    was paused never start a flow."""

    name: str
    action: str


@dataclass(frozen=True, slots=True)
class FireSchedule:
    """Start the flows of ticks of schedule `name` at `revision`: one per tick later than its
    last tick, with flow id flow_ids[i] for ticks[i] (an existing flow id is kept: a tick
    fires once however many journals send it); then its last tick becomes `through` if later.
    Nothing happens if the schedule is gone, paused or at another revision.
    Result: the ids of the flows created."""

    name: str
    revision: int
    ticks: tuple[float, ...]
    flow_ids: tuple[str, ...]
    through: float


@dataclass(frozen=True, slots=True)
class PruneFlows:
    """Delete up to `limit` flows of `statuses` (COMPLETE, FAILED, CANCELLED only) that ended
    before `before` (seconds since the epoch), with their steps and events; a flow whose parent
    has not ended is kept. Result: the number deleted (fewer than limit: none left to delete)."""

    before: float
    statuses: tuple[str, ...] = ("COMPLETE", "FAILED", "CANCELLED")
    limit: int = 1000
