"""In-memory store: the reference semantics of every command, for tests and small uses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core import TERMINAL, Failure, FlowRecord, FlowStatus, StepRecord, StepStatus
from ..errors import FencedError, FlowBusyError, FlowNotFoundError
from .base import LogBase
from ..core.queues import QueueLimits
from .commands import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, Command, CountFlows, NextDue,
                       FinishFlow, FlowPage, ForkFlow, GetFlow, InvokeChild, ListFlows, LoadHistory, LoadSteps,
                       MigrateFlows, PutRecord, QueryFlows, RecordCrash, ReleaseWorker, RenewLeases, ResetStore,
                       RetryFlow, ScanRecords, Scheduled, ScheduleFlow, SendSignal, SuspendFlow, WaitingSignals)
from .crashes import check, crashed, in_flight
from .memory_upkeep import MemoryUpkeep
from .events import (Event, FlowEvent, claim_events, crash_events, dumps, fenced_event, finish_event,
                     scheduled_event, step_event, suspend_event)
from .memory_queues import MemoryQueues
from .queue_rules import interleave
from .rules import (REFUSALS, RETRYABLE, check_migration, child_outcome, due_at, fence, invalid, matches,
                    migrated_event, migrates, retried, runnable, serves)

__all__ = ["InMemoryExecutionLog"]


class InMemoryExecutionLog(MemoryQueues, MemoryUpkeep, LogBase):
    """Keeps flows and steps in dicts; `execute` is atomic because it never awaits."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowRecord] = {}
        self._steps: dict[str, dict[int, StepRecord]] = {}
        self._last_claim: dict[str, tuple[str, list[str]]] = {}  # worker -> (request_id, flow ids)
        self._signals: dict[str, bytes] = {}
        self._consumed: set[str] = set()
        self._records: dict[str, bytes] = {}  # PyErgon's store API (storage/pyergon.py)
        self._events: dict[str, list[FlowEvent]] = {}
        self._order: dict[str, int] = {}  # flow_id -> its place in schedule order
        self._queued: dict[str, tuple[str | None, int, str | None, str | None]] = {}  # queue, priority, key, dedup
        self._queues: dict[str, QueueLimits | None] = {}  # every named queue: its limits (None: undeclared)
        self._starts: dict[str, list[float]] = {}  # a rate-limited queue's claim times, oldest first
        self._schedules = {}

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        now = time.time()
        results: list[object] = []
        for command in commands:
            try:
                results.append(getattr(self, "_" + type(command).__name__)(command, now))
            except REFUSALS as exc:
                results.append(exc)
            except Exception as exc:  # the command's own content: only it fails
                results.append(invalid(command, exc))
        self.notify(commands)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(flows={len(self._flows)})"

    def __str__(self) -> str:
        return type(self).__name__  # as PyErgon prints its in-memory store

    def _event(self, flow_id: str, now: float, event: Event) -> None:
        """Append an event to the flow's history (in the same call as the change it records)."""
        events = self._events.setdefault(flow_id, [])
        events.append(FlowEvent(len(events) + 1, now, event[0], dumps(event[1])))

    def _refuse(self, command: Any, refused: Exception, now: float) -> Exception:
        """Record a fenced write in its flow's history; returns the refusal to raise."""
        if isinstance(refused, FencedError):
            self._event(refused.flow_id, now, fenced_event(command, refused.epoch, refused.reason))
        return refused

    def _ScheduleFlow(self, c: ScheduleFlow, now: float) -> Scheduled:
        if c.flow_id in self._flows:
            return Scheduled(c.flow_id, False)
        if c.dedup_id is not None:
            for other, (queue, _, _, dedup) in self._queued.items():
                if dedup == c.dedup_id and queue == c.queue and self._flows[other].status not in TERMINAL:
                    return Scheduled(other, False)
        if c.queue is not None or c.dedup_id is not None:
            self._queued[c.flow_id] = (c.queue, c.priority, c.key, c.dedup_id)
        if c.queue is not None:
            self._queues.setdefault(c.queue, None)
        ready = now if c.ready_at is None else c.ready_at
        self._flows[c.flow_id] = FlowRecord(
            c.flow_id, c.flow_type, c.args, FlowStatus.PENDING, c.version, ready_at=ready,
            parent_id=c.parent_id, created_at=now, updated_at=now)
        self._steps[c.flow_id] = {}
        self._order[c.flow_id] = len(self._order)
        self._event(c.flow_id, now, scheduled_event(c.flow_type, c.parent_id, c.ready_at))
        return Scheduled(c.flow_id, True)

    def _ClaimFlows(self, c: ClaimFlows, now: float) -> list[Claim]:
        last = self._last_claim.get(c.worker_id)
        if last is not None and last[0] == c.request_id:  # a re-sent claim: answer it again
            ids = [i for i in last[1] if (f := self._flows.get(i)) is not None and f.owner == c.worker_id
                   and f.status == FlowStatus.RUNNING]
        else:
            ids = self._claimable(c, now)
            for flow_id in ids:
                self._started(flow_id, now)
                flow = self._flows[flow_id]
                pinned = flow.version if c.flow_id is not None or flow.version is not None else c.version
                self._flows[flow_id] = replace(
                    flow, status=FlowStatus.RUNNING, epoch=flow.epoch + 1, owner=c.worker_id,
                    lease_expires=now + c.lease_seconds, waiting_on=None, updated_at=now, version=pinned)
                for event in claim_events(flow.status, flow.owner, flow.epoch, flow.lease_expires,
                                          flow.waiting_on, c.worker_id, now):
                    self._event(flow_id, now, event)
            self._last_claim[c.worker_id] = (c.request_id, ids)
        return [Claim(self._flows[i], tuple(sorted(self._steps[i].values(), key=lambda s: s.position)))
                for i in ids]

    def _claimable(self, c: ClaimFlows, now: float) -> list[str]:
        if c.flow_id is not None:
            flow = self._flows.get(c.flow_id)
            if flow is None:
                raise FlowNotFoundError(c.flow_id)
            if flow.status in TERMINAL:
                return []
            if flow.status == FlowStatus.RUNNING and not runnable(flow, now) and not c.steal:
                raise FlowBusyError(c.flow_id)
            return [c.flow_id]
        types = None if c.flow_types is None else set(c.flow_types)
        due = [f for f in self._flows.values() if runnable(f, now) and (types is None or f.flow_type in types)
               and serves(c.version, f.version)]
        due.sort(key=lambda f: (f.ready_at or 0.0, f.created_at))
        suspects = [f for f in due if f.suspect]
        if suspects:  # they run in their groups: only a worker that runs nothing takes one, and nothing else
            size = min(c.limit, suspects[0].suspect) if c.solo else 0
            group = [f for f in suspects if f.suspect >= suspects[0].suspect][:size]
            return self._admitted_group(c, now, group)  # and each waits for room in its queue
        by_queue: dict[str, list[FlowRecord]] = {}
        default = []
        for flow in due:
            queue = self._queue_of(flow.flow_id)
            if queue is None:
                default.append(flow.flow_id)
            else:
                by_queue.setdefault(queue, []).append(flow)
        picks = [self._admitted(q, c, now, by_queue[q], c.limit) for q in sorted(by_queue)]
        taken = interleave(picks, c.limit)
        return taken + default[:c.limit - len(taken)]

    def _RenewLeases(self, c: RenewLeases, now: float) -> int:
        owned = [f for f in self._flows.values() if f.owner == c.worker_id and f.status == FlowStatus.RUNNING
                 and (c.flow_ids is None or f.flow_id in c.flow_ids)]
        for flow in owned:
            self._flows[flow.flow_id] = replace(flow, lease_expires=now + c.lease_seconds)
        return len(owned)

    def _ReleaseWorker(self, c: ReleaseWorker, now: float) -> int:
        owned = [f for f in self._flows.values() if f.owner == c.worker_id and f.status == FlowStatus.RUNNING]
        for flow in owned:
            self._flows[flow.flow_id] = replace(
                flow, status=FlowStatus.PENDING, owner=None, lease_expires=None, ready_at=now, updated_at=now)
            self._event(flow.flow_id, now, ("released", {"worker": c.worker_id, "epoch": flow.epoch}))
        return len(owned)

    def _RecordCrash(self, c: RecordCrash, now: float) -> list[FlowRecord]:
        check(c)
        held = sorted((f for f in self._flows.values() if f.owner == c.worker_id and f.status == FlowStatus.RUNNING),
                      key=lambda f: f.flow_id)
        out = []
        for flow in held:
            step = in_flight((s.position, s.name, s.status) for s in self._steps[flow.flow_id].values())
            flow = self._flows[flow.flow_id] = crashed(flow, c, step, len(held), now)
            for event in crash_events(flow):
                self._event(flow.flow_id, now, event)
            if flow.status in TERMINAL:
                self._child_ended(flow, now)
            out.append(flow)
        return out

    def _recorded(self, flow_id: str, epoch: int, position: int) -> StepRecord | None:
        """The step already journaled at this position by this epoch (a re-sent request)."""
        step = self._steps.get(flow_id, {}).get(position)
        flow = self._flows.get(flow_id)
        return step if step is not None and flow is not None and flow.epoch == epoch else None

    def _writable(self, c: AwaitSignal | InvokeChild, now: float) -> StepRecord | None:
        """The step a re-sent command already journaled; else None, once the write may go ahead."""
        done = self._recorded(c.flow_id, c.epoch, c.step.position)
        if done is None:
            refused = fence(self._flows.get(c.flow_id), c.flow_id, c.epoch)
            if refused is not None:
                raise self._refuse(c, refused, now)
        return done

    def _AppendStep(self, c: AppendStep, now: float) -> None:
        done = self._recorded(c.flow_id, c.epoch, c.step.position)
        if done is not None and done.status == StepStatus.COMPLETE:
            return None  # recorded once: a re-sent append changes nothing
        refused = fence(self._flows.get(c.flow_id), c.flow_id, c.epoch)
        if refused is not None:
            raise self._refuse(c, refused, now)
        self._steps[c.flow_id][c.step.position] = replace(c.step, completed_at=now)
        self._event(c.flow_id, now, step_event(c.step))

    def _finish(self, c: Any, now: float, event: Event | None, **changes: Any) -> FlowRecord:
        """Apply command `c`'s changes to its flow (fenced by its epoch), recording `event`."""
        flow_id = c.flow_id
        flow = self._flows.get(flow_id)
        refused = fence(flow, flow_id, c.epoch, cancelling=changes["status"] == FlowStatus.CANCELLED)
        if refused is not None:
            if flow is not None and flow.epoch == c.epoch and flow.status == changes["status"]:
                return flow  # a re-sent command after its commit
            raise self._refuse(c, refused, now)
        assert flow is not None  # fence refuses a missing flow
        flow = self._flows[flow_id] = replace(flow, owner=None, lease_expires=None, updated_at=now,
                                              suspect=0, **changes)
        if event is not None:
            self._event(flow_id, now, event)
        if flow.status in TERMINAL:
            self._child_ended(flow, now)
        return flow

    def _child_ended(self, child: FlowRecord, now: float) -> None:
        """Tell a child's parent, in its history and by waking it if it waits for the child."""
        if child.parent_id is not None and child.parent_id in self._flows:
            self._event(child.parent_id, now, ("child_finished", {"child": child.flow_id, "status": child.status}))
            self._wake(child.parent_id, f"child:{child.flow_id}", now)

    def _wake(self, flow_id: str | None, waiting_on: str, now: float) -> None:
        if flow_id is None:
            return
        flow = self._flows.get(flow_id)
        if flow is not None and flow.status == FlowStatus.SUSPENDED and flow.waiting_on == waiting_on:
            self._flows[flow_id] = replace(flow, ready_at=now)

    def _FinishFlow(self, c: FinishFlow, now: float) -> None:
        self._finish(c, now, finish_event(c.status, c.error), status=c.status, result=c.result,
                     error=c.error, ready_at=None, waiting_on=None)

    def _SuspendFlow(self, c: SuspendFlow, now: float) -> None:
        flow = self._flows.get(c.flow_id)
        attempt = c.attempt if c.attempt is not None else (flow.attempt if flow else 1)
        error = c.error if c.error is not None else (flow.error if flow else None)
        self._finish(c, now, suspend_event(c.ready_at, c.waiting_on, c.attempt, c.error),
                     status=FlowStatus.SUSPENDED, ready_at=c.ready_at, attempt=attempt, error=error,
                     waiting_on=c.waiting_on)

    def _AwaitSignal(self, c: AwaitSignal, now: float) -> StepRecord | None:
        done = self._writable(c, now)
        if done is not None:
            return done
        if c.signal in self._signals and c.signal not in self._consumed:
            self._consumed.add(c.signal)
            step = self._steps[c.flow_id][c.step.position] = replace(
                c.step, status=StepStatus.COMPLETE, result=self._signals[c.signal], completed_at=now)
            self._event(c.flow_id, now, ("signal_received", {"name": c.signal}))
            return step
        self._finish(c, now, ("signal_waiting", {"name": c.signal, "until": c.ready_at}),
                     status=FlowStatus.SUSPENDED, ready_at=c.ready_at, waiting_on=f"signal:{c.signal}")
        return None

    def _SendSignal(self, c: SendSignal, now: float) -> bool:
        if c.name in self._signals:
            return False
        self._signals[c.name] = c.payload
        for flow in list(self._flows.values()):
            self._wake(flow.flow_id, f"signal:{c.name}", now)
        return True

    def _InvokeChild(self, c: InvokeChild, now: float) -> StepRecord | None:
        done = self._writable(c, now)
        if done is not None:
            return done
        if self._ScheduleFlow(replace(c.child, parent_id=c.flow_id), now).created:
            self._event(c.flow_id, now, ("child_started", {"child": c.child.flow_id, "type": c.child.flow_type}))
        child = self._flows[c.child.flow_id]
        if child.status in TERMINAL:
            step = self._steps[c.flow_id][c.step.position] = child_outcome(c.step, child, now)
            self._event(c.flow_id, now, step_event(step))
            return step
        self._finish(c, now, None, status=FlowStatus.SUSPENDED, ready_at=c.ready_at,
                     waiting_on=f"child:{child.flow_id}")
        return None

    def _CancelFlow(self, c: CancelFlow, now: float) -> str:
        flow = self._flows.get(c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        if flow.status in TERMINAL:
            return flow.status
        if flow.status == FlowStatus.RUNNING:
            self._flows[c.flow_id] = replace(flow, cancel_requested=True, updated_at=now)
            self._event(c.flow_id, now, ("cancel_requested", {}))
        else:
            cancelled = self._flows[c.flow_id] = replace(
                flow, status=FlowStatus.CANCELLED, ready_at=None, waiting_on=None, suspect=0,
                error=Failure.cancelled(c.flow_id), updated_at=now)
            self._event(c.flow_id, now, ("cancelled", {}))
            self._child_ended(cancelled, now)
        for child in [f for f in self._flows.values() if f.parent_id == c.flow_id]:
            self._CancelFlow(CancelFlow(child.flow_id), now)
        return self._flows[c.flow_id].status

    def _WaitingSignals(self, c: WaitingSignals, now: float) -> list[str]:
        names = {f.waiting_on[7:] for f in self._flows.values() if f.status == FlowStatus.SUSPENDED
                 and f.waiting_on is not None and f.waiting_on.startswith("signal:")}
        return sorted(names - set(self._signals))[:c.limit]

    def _GetFlow(self, c: GetFlow, now: float) -> FlowRecord | None:
        return self._flows.get(c.flow_id)

    def _LoadSteps(self, c: LoadSteps, now: float) -> list[StepRecord]:
        return sorted(self._steps.get(c.flow_id, {}).values(), key=lambda s: s.position)

    def _LoadHistory(self, c: LoadHistory, now: float) -> list[FlowEvent]:
        return self._events.get(c.flow_id, [])[max(c.after, 0):max(c.after, 0) + max(c.limit, 0)]

    def _QueryFlows(self, c: QueryFlows, now: float) -> FlowPage:
        def key(flow: FlowRecord) -> tuple[float, int]:
            return flow.created_at, self._order[flow.flow_id]

        flows = sorted((f for f in self._flows.values() if matches(f, c)), key=key, reverse=c.newest_first)
        if c.cursor is not None:
            at, _, order = c.cursor.partition(":")
            mark = (float(at), int(order))
            flows = [f for f in flows if (key(f) < mark if c.newest_first else key(f) > mark)]
        page = flows[:max(c.limit, 0)]
        more = len(flows) > len(page) and page
        return FlowPage(tuple(page), f"{key(page[-1])[0]!r}:{key(page[-1])[1]}" if more else None)

    def _RetryFlow(self, c: RetryFlow, now: float) -> None:
        flow = self._flows.get(c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        self._flows[c.flow_id] = again = retried(flow, now)
        self._event(c.flow_id, now, ("retried", {"attempt": again.attempt}))
        for child in [f for f in self._flows.values() if f.parent_id == c.flow_id and f.status in RETRYABLE]:
            self._RetryFlow(RetryFlow(child.flow_id), now)

    def _ForkFlow(self, c: ForkFlow, now: float) -> Scheduled:
        flow = self._flows.get(c.flow_id)
        if flow is None:
            raise FlowNotFoundError(c.flow_id)
        if c.new_flow_id in self._flows:
            return Scheduled(c.new_flow_id, False)
        self._ScheduleFlow(ScheduleFlow(c.new_flow_id, flow.flow_type, flow.args, flow.version), now)
        # epoch 1: its first claim (epoch 2) is a resumption, with steps to replay
        self._flows[c.new_flow_id] = replace(self._flows[c.new_flow_id], epoch=1)
        self._steps[c.new_flow_id] = {p: s for p, s in self._steps[c.flow_id].items()
                                      if p < c.from_position and s.status == StepStatus.COMPLETE}
        details = {"into": c.new_flow_id, "from_step": c.from_position}
        self._event(c.flow_id, now, ("forked", details))
        self._event(c.new_flow_id, now, ("forked", {"from": c.flow_id, "from_step": c.from_position}))
        return Scheduled(c.new_flow_id, True)

    def _MigrateFlows(self, c: MigrateFlows, now: float) -> int:
        check_migration(c)
        moving = [f for f in self._flows.values() if migrates(c, f)]
        for flow in moving:
            self._flows[flow.flow_id] = replace(flow, version=c.to_version, updated_at=now)
            self._event(flow.flow_id, now, migrated_event(flow.version, c.to_version))
        return len(moving)

    def _ListFlows(self, c: ListFlows, now: float) -> list[FlowRecord]:
        flows = [f for f in self._flows.values() if c.status is None or f.status == c.status]
        return sorted(flows, key=lambda f: f.created_at)[:c.limit]

    def _NextDue(self, c: NextDue, now: float) -> float | None:
        types = None if c.flow_types is None else set(c.flow_types)
        times = [due_at(f) for f in self._flows.values() if types is None or f.flow_type in types]
        return min((t for t in times if t is not None), default=None)

    def _CountFlows(self, c: CountFlows, now: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for flow in self._flows.values():
            counts[flow.status] = counts.get(flow.status, 0) + 1
        counts["due"] = sum(1 for f in self._flows.values() if runnable(f, now))
        quarantined = sum(1 for f in self._flows.values() if f.quarantined)
        if quarantined:
            counts["quarantined"] = quarantined
        return counts if c.limit is None else {k: min(v, c.limit) for k, v in counts.items()}

    def _PutRecord(self, c: PutRecord, now: float) -> bool:
        if c.check and self._records.get(c.key) != c.expected:
            return False
        if c.value is None:
            self._records.pop(c.key, None)
        else:
            self._records[c.key] = c.value
        return True

    def _ScanRecords(self, c: ScanRecords, now: float) -> list[list[object]]:
        return [[k, v] for k, v in sorted(self._records.items()) if k.startswith(c.prefix)]

    def _ResetStore(self, c: ResetStore, now: float) -> None:
        for table in (self._flows, self._steps, self._last_claim, self._signals, self._consumed, self._records,
                      self._events, self._order, self._queued, self._queues, self._starts, self._schedules):
            table.clear()
