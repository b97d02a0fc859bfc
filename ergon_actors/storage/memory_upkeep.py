"""In-memory handlers of the cron schedule and retention commands (the reference semantics).

Mixed into InMemoryExecutionLog.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..core import TERMINAL
from ..errors import ScheduleNotFoundError
from .commands import Scheduled, ScheduleFlow
from .schedules import check_change, check_prune, check_put
from .upkeep_commands import ChangeSchedule, CronSchedule, FireSchedule, ListSchedules, PruneFlows, PutSchedule

if TYPE_CHECKING:
    from ..core import FlowRecord, StepRecord
    from .events import FlowEvent

__all__ = ["MemoryUpkeep"]


class MemoryUpkeep:
    """Schedules in a dict by name; prune deletes a flow with its steps and events."""

    _schedules: dict[str, CronSchedule]
    if TYPE_CHECKING:
        _flows: dict[str, FlowRecord]
        _steps: dict[str, dict[int, StepRecord]]
        _events: dict[str, list[FlowEvent]]
        _order: dict[str, int]

        def _ScheduleFlow(self, c: ScheduleFlow, now: float) -> Scheduled: ...

    def _PutSchedule(self, c: PutSchedule, now: float) -> CronSchedule:
        check_put(c)
        old = self._schedules.get(c.name)
        if old is None:
            new = CronSchedule(c.name, c.cron, c.flow_type, c.args, c.missed, False, now, 1, now)
        elif (old.cron, old.flow_type, old.args, old.missed) == (c.cron, c.flow_type, c.args, c.missed):
            return old
        else:
            new = replace(old, cron=c.cron, flow_type=c.flow_type, args=c.args, missed=c.missed,
                          revision=old.revision + 1)
        self._schedules[c.name] = new
        return new

    def _ListSchedules(self, c: ListSchedules, now: float) -> list[CronSchedule]:
        return [self._schedules[name] for name in sorted(self._schedules)]

    def _ChangeSchedule(self, c: ChangeSchedule, now: float) -> CronSchedule | None:
        check_change(c)
        old = self._schedules.get(c.name)
        if old is None:
            raise ScheduleNotFoundError(c.name)
        if c.action == "delete":
            del self._schedules[c.name]
            return None
        if c.action == "pause":
            new = replace(old, paused=True)
        else:
            new = old if not old.paused else replace(old, paused=False, last_tick=max(old.last_tick, now))
        self._schedules[c.name] = new
        return new

    def _FireSchedule(self, c: FireSchedule, now: float) -> list[str]:
        s = self._schedules.get(c.name)
        if s is None or s.paused or s.revision != c.revision:
            return []
        created = [flow_id for tick, flow_id in zip(c.ticks, c.flow_ids, strict=True)
                   if tick > s.last_tick
                   and self._ScheduleFlow(ScheduleFlow(flow_id, s.flow_type, s.args), now).created]
        if c.through > s.last_tick:
            self._schedules[c.name] = replace(s, last_tick=c.through)
        return created

    def _PruneFlows(self, c: PruneFlows, now: float) -> int:
        statuses = check_prune(c)
        gone: list[str] = []
        for flow in sorted(self._flows.values(), key=lambda f: f.updated_at):
            if len(gone) >= c.limit or flow.updated_at >= c.before:
                break
            parent = self._flows.get(flow.parent_id) if flow.parent_id is not None else None
            if flow.status in statuses and (parent is None or parent.status in TERMINAL):
                gone.append(flow.flow_id)
        for flow_id in gone:
            for table in (self._flows, self._steps, self._events, self._order):
                table.pop(flow_id, None)
        return len(gone)
