"""Cron schedules and retention, as the stores and the journal use them: checking a schedule,
the ticks due now under its missed policy and their flow ids, and checking a prune.

Expressions are parsed by cronsim: five fields (minute to day of week) or six (a seconds field
first), in UTC. Which ticks are due is worked out here, by every journal on its own; the store
starts a tick's flow only if its flow id is new and the tick is later than the schedule's last
one, so each tick starts one flow however many journals fire it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from cronsim import CronSim, CronSimError

from ..core import TERMINAL
from ..errors import ConfigError
from .upkeep_commands import (MISSED_POLICIES, SCHEDULE_ACTIONS, ChangeSchedule, CronSchedule, FireSchedule,
                              ListSchedules, PruneFlows, PutSchedule)

__all__ = ["check_cron", "check_put", "check_change", "check_prune", "tick_id", "due_ticks", "plan_fires",
           "next_tick", "fire_due", "prune_all", "MISSED_AFTER", "MAX_TICKS", "TERMINAL_STATUSES"]

log = logging.getLogger(__name__)

MISSED_AFTER = 60.0
"""Seconds after which a tick not yet fired counts as missed (nothing ran at its time)."""
MAX_TICKS = 1000
"""Ticks of one schedule fired in one pass at most (policy "all" after a long stop)."""
MAX_NAME = 200
TERMINAL_STATUSES = ("COMPLETE", "FAILED", "CANCELLED")


def check_cron(expression: str) -> str:
    """The expression, if cronsim parses it; ConfigError saying what is wrong otherwise."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ConfigError(f"cron expression {expression!r} has {len(fields)} fields: write 5 (minute hour "
                          "day-of-month month day-of-week, e.g. '*/5 * * * *') or 6 (seconds first)")
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        raise ConfigError(f"cron expression {expression!r}: {exc}") from None
    return expression


def check_put(c: PutSchedule) -> None:
    """Raise ConfigError for a schedule a store must not keep."""
    if not c.name or len(c.name) > MAX_NAME or c.name != c.name.strip():
        raise ConfigError(f"schedule name {c.name!r}: 1 to {MAX_NAME} characters, no spaces around it")
    if c.missed not in MISSED_POLICIES:
        raise ConfigError(f"missed policy {c.missed!r}: one of {', '.join(MISSED_POLICIES)}")
    check_cron(c.cron)


def check_change(c: ChangeSchedule) -> None:
    if c.action not in SCHEDULE_ACTIONS:
        raise ConfigError(f"schedule action {c.action!r}: one of {', '.join(SCHEDULE_ACTIONS)}")


def check_prune(c: PruneFlows) -> tuple[str, ...]:
    """The statuses to prune; ConfigError for a status that has not ended or a negative limit."""
    live = [s for s in c.statuses if s not in TERMINAL]
    if live or not c.statuses:
        raise ConfigError(f"prune deletes ended flows only: statuses among COMPLETE, FAILED, CANCELLED, "
                          f"got {', '.join(map(str, c.statuses)) or 'none'}")
    if c.limit < 0:
        raise ConfigError(f"prune limit must be >= 0, got {c.limit}")
    return tuple(str(s) for s in c.statuses)


def tick_id(name: str, tick: float) -> str:
    """The flow id of a schedule's tick: NAME@YYYY-MM-DDTHH:MM:SSZ."""
    return f"{name}@{datetime.fromtimestamp(tick, UTC):%Y-%m-%dT%H:%M:%SZ}"


def _ticks(cron: str, after: float, reverse: bool = False) -> Iterator[float]:
    """The cron's ticks after `after` (before it with reverse), whole seconds, nearest first."""
    start = datetime.fromtimestamp(math.floor(after) if not reverse else math.floor(after) + 1, UTC)
    for moment in CronSim(cron, start, reverse=reverse):
        yield moment.timestamp()


def due_ticks(s: CronSchedule, now: float, missed_after: float = MISSED_AFTER) -> tuple[list[float], float] | None:
    """The ticks of `s` to start flows for now, and the tick through which it is then done;
    None when no tick is due.

    A tick more than missed_after seconds old was missed: under "skip" none of those starts a
    flow, under "once" the latest of them does, under "all" each does (MAX_TICKS per pass).
    Every tick that is not missed starts a flow.
    """
    edge = now - missed_after
    first = next(_ticks(s.cron, s.last_tick), None)
    if first is None or first > now:
        return None
    fire: list[float] = []
    through = s.last_tick
    if first <= edge:
        if s.missed == "all":
            for tick in _ticks(s.cron, s.last_tick):
                if tick > edge:
                    break
                fire.append(tick)
                if len(fire) == MAX_TICKS:
                    return fire, tick  # the rest in the next pass
        else:
            latest = next(_ticks(s.cron, edge, reverse=True))
            through = latest
            if s.missed == "once":
                fire.append(latest)
    for tick in _ticks(s.cron, max(s.last_tick, edge)):
        if tick > now or len(fire) == MAX_TICKS:
            break
        fire.append(tick)
    return fire, max([through, *fire])


def plan_fires(schedules: Sequence[CronSchedule], now: float,
               missed_after: float = MISSED_AFTER) -> list[FireSchedule]:
    """The FireSchedule commands that start every due tick of the schedules that are not paused."""
    commands = []
    for s in schedules:
        try:
            due = None if s.paused else due_ticks(s, now, missed_after)
        except CronSimError as exc:  # written by another version? the other schedules still fire
            _report(s, exc)
            continue
        if due is not None:
            ticks, through = due
            commands.append(FireSchedule(s.name, s.revision, tuple(ticks), tuple(tick_id(s.name, t) for t in ticks),
                                         through))
    return commands


def next_tick(schedules: Sequence[CronSchedule], now: float) -> float | None:
    """The earliest tick after now of the schedules that are not paused (None: there is none)."""
    ticks = []
    for s in schedules:
        try:
            ticks.append(None if s.paused else next(_ticks(s.cron, max(s.last_tick, now)), None))
        except CronSimError as exc:
            _report(s, exc)
    return min((t for t in ticks if t is not None), default=None)


_reported: set[tuple[str, int]] = set()


def _report(s: CronSchedule, exc: CronSimError) -> None:
    """Log a schedule whose expression cannot be read, once per revision of it."""
    if (s.name, s.revision) not in _reported:
        _reported.add((s.name, s.revision))
        log.error("schedule %r (revision %d) is skipped: cron expression %r: %s", s.name, s.revision, s.cron, exc)


Execute = Callable[[list[Any]], Awaitable[list[object]]]


async def fire_due(execute: Execute, now: float | None = None,
                   missed_after: float = MISSED_AFTER) -> tuple[list[str], float | None]:
    """Start the flows of every schedule's due ticks through `execute` (a store's, or the
    journal's, which waits out an outage). Returns the flow ids created, and the next tick
    after now (None: no schedule is active)."""
    now = time.time() if now is None else now
    (schedules,) = await execute([ListSchedules()])
    if isinstance(schedules, BaseException):
        raise schedules
    created: list[str] = []
    fires = plan_fires(cast("list[CronSchedule]", schedules), now, missed_after)
    for fire, result in zip(fires, await execute(fires) if fires else [], strict=True):
        if isinstance(result, BaseException):
            log.error("schedule %r could not start its flows: %s", fire.name, result)
        else:
            created += cast("list[str]", result)
    return created, next_tick(cast("list[CronSchedule]", schedules), now)


async def prune_all(execute: Execute, before: float, statuses: tuple[str, ...] = TERMINAL_STATUSES,
                    batch: int = 1000) -> int:
    """Delete every flow of `statuses` that ended before `before`, `batch` per transaction (see
    PruneFlows); returns how many were deleted."""
    total = 0
    while True:
        (result,) = await execute([PruneFlows(before, statuses, batch)])
        if isinstance(result, BaseException):
            raise result
        total += cast(int, result)
        if cast(int, result) < batch:
            return total
