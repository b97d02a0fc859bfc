"""The ExecutionLog protocol: one async `execute(commands)`, and the named helpers built on it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Protocol, Self, cast, runtime_checkable

from ..core import TERMINAL, Failure, FlowRecord, StepRecord
from ..core.queues import QueueLimits, QueueState
from ..errors import FlowNotFoundError, TimeoutExpired
from .commands import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, Command, CountFlows, DeclareQueue,
                       FinishFlow, FlowPage, ForkFlow, GetFlow, InvokeChild, ListFlows, LoadHistory, LoadSteps,
                       MigrateFlows, NextDue, QueryFlows, QueueStats, RecordCrash, ReleaseWorker, RenewLeases,
                       RetryFlow, Scheduled, ScheduleFlow, SendSignal, SuspendFlow, WaitingSignals)
from .events import FlowEvent
from .upkeep_commands import ChangeSchedule, CronSchedule, ListSchedules, PruneFlows, PutSchedule
from .pyergon import PyErgonLogMixin, StorageError  # noqa: F401 (PyErgon's name, at its path)

__all__ = ["ExecutionLog", "LogBase"]

log = logging.getLogger(__name__)


@runtime_checkable
class ExecutionLog(Protocol):
    """What the durable layer needs from a store (local, remote or the journal actor)."""

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        """Apply commands in order, as one transaction where the store has them.

        Returns one result per command; a refused command (fenced, not found, busy) yields its
        ErgonError instance in place of a result instead of raising, so one refusal never
        fails the others. Raises only when the store itself fails (nothing was applied).
        """
        ...

    async def close(self) -> None: ...


WAKING = (ScheduleFlow, ReleaseWorker, SendSignal, FinishFlow, CancelFlow, InvokeChild, RecordCrash, RetryFlow,
          ForkFlow, MigrateFlows)
"""Commands after which a flow may be runnable at once: workers are told to look."""


class LogBase(PyErgonLogMixin):
    """Named operations over `execute`, shared by every store and by the journal client.

    PyErgon's store API (`get_invocation`, `enqueue_flow`, ...) comes with it (storage/pyergon.py).
    """

    poll_interval = 0.05  # how often wait_for_completion looks for writes by other processes
    # True where execute() is a round trip to a server that applies concurrent calls in the order
    # they were made: the journal then sends a batch while the one before it is under way
    pipelined = False

    def listen(self, event: asyncio.Event) -> None:
        """Set `event` whenever flows may have become runnable here (scheduled, released, woken)."""
        self.__dict__.setdefault("_listeners", []).append(event)

    def unlisten(self, event: asyncio.Event) -> None:
        listeners = self.__dict__.get("_listeners", [])
        if event in listeners:
            listeners.remove(event)

    def notify(self, commands: Sequence[Command] | None = None) -> None:
        """Wake the listeners if `commands` (None: unknown) may have made a flow runnable."""
        listeners = self.__dict__.get("_listeners")
        if listeners and (commands is None or any(isinstance(c, WAKING) for c in commands)):
            for event in listeners:
                event.set()

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _one(self, command: Command) -> object:
        """Execute one command; its result (of the type its docstring names), or raise its refusal."""
        (result,) = await self.execute([command])
        if isinstance(result, BaseException):
            raise result
        return result

    async def schedule_flow(self, flow_id: str, flow_type: str, args: bytes, *,
                            version: str | None = None, ready_at: float | None = None,
                            parent_id: str | None = None, queue: str | None = None, priority: int = 0,
                            key: str | None = None, dedup_id: str | None = None) -> Scheduled:
        command = ScheduleFlow(flow_id, flow_type, args, version, ready_at, parent_id, queue, priority, key, dedup_id)
        return cast("Scheduled", await self._one(command))

    async def declare_queue(self, limits: QueueLimits, *, replace: bool = True) -> bool:
        """Store a named queue's limits (with replace False: only if it has none yet); True if written."""
        return cast("bool", await self._one(DeclareQueue(limits, replace)))

    async def queue_stats(self, limit: int = 1000) -> list[QueueState]:
        """Every named queue with its limits and its flows due, running and waiting now, by name."""
        return cast("list[QueueState]", await self._one(QueueStats(limit)))

    async def claim(self, worker_id: str, limit: int, lease_seconds: float, *,
                    flow_types: tuple[str, ...] | None = None, flow_id: str | None = None,
                    steal: bool = False, solo: bool = False, version: str | None = None) -> list[Claim]:
        command = ClaimFlows(worker_id, uuid.uuid4().hex, limit, lease_seconds, flow_types, flow_id, steal, solo,
                             version)
        return cast("list[Claim]", await self._one(command))

    async def renew_leases(self, worker_id: str, lease_seconds: float,
                           flow_ids: tuple[str, ...] | None = None) -> int:
        return cast("int", await self._one(RenewLeases(worker_id, lease_seconds, flow_ids)))

    async def release_worker(self, worker_id: str) -> int:
        return cast("int", await self._one(ReleaseWorker(worker_id)))

    async def record_crash(self, worker_id: str, exit_code: int | None, signal: int | None, cause: str,
                           max_crashes: int) -> list[FlowRecord]:
        """Record a worker's unplanned death against the flows it held (see RecordCrash); logs
        each flow quarantined by it at ERROR. Returns those flows as they are now."""
        command = RecordCrash(worker_id, exit_code, signal, cause, max_crashes)
        flows = cast(list[FlowRecord], await self._one(command))
        for flow in flows:
            if flow.quarantined and flow.error is not None:
                log.error("%s", flow.error.message)
        return flows

    async def append_step(self, flow_id: str, epoch: int, step: StepRecord) -> None:
        await self._one(AppendStep(flow_id, epoch, step))

    async def finish_flow(self, flow_id: str, epoch: int, status: str, *,
                          result: bytes | None = None, error: Failure | None = None) -> None:
        await self._one(FinishFlow(flow_id, epoch, status, result, error))

    async def suspend_flow(self, flow_id: str, epoch: int, ready_at: float | None, *,
                           attempt: int | None = None, error: Failure | None = None,
                           waiting_on: str | None = None) -> None:
        await self._one(SuspendFlow(flow_id, epoch, ready_at, attempt, error, waiting_on))

    async def await_signal(self, flow_id: str, epoch: int, step: StepRecord, signal: str,
                           ready_at: float | None = None) -> StepRecord | None:
        return cast("StepRecord | None", await self._one(AwaitSignal(flow_id, epoch, step, signal, ready_at)))

    async def send_signal(self, name: str, payload: bytes) -> bool:
        """Deliver a signal (payload: codec-encoded); False if this name was already sent."""
        return cast("bool", await self._one(SendSignal(name, payload)))

    async def invoke_child(self, flow_id: str, epoch: int, step: StepRecord, child: ScheduleFlow,
                           ready_at: float | None = None) -> StepRecord | None:
        return cast("StepRecord | None", await self._one(InvokeChild(flow_id, epoch, step, child, ready_at)))

    async def cancel_flow(self, flow_id: str) -> str:
        """Cancel a flow and its live children; returns its status (RUNNING: stops at its next step)."""
        return cast("str", await self._one(CancelFlow(flow_id)))

    async def waiting_signals(self, limit: int = 1000) -> list[str]:
        return cast("list[str]", await self._one(WaitingSignals(limit)))

    async def get_flow(self, flow_id: str) -> FlowRecord | None:
        return cast("FlowRecord | None", await self._one(GetFlow(flow_id)))

    async def load_steps(self, flow_id: str) -> list[StepRecord]:
        return cast("list[StepRecord]", await self._one(LoadSteps(flow_id)))

    async def list_flows(self, status: str | None = None, limit: int = 1000) -> list[FlowRecord]:
        return cast("list[FlowRecord]", await self._one(ListFlows(status, limit)))

    async def count_flows(self, limit: int | None = None) -> dict[str, int]:
        return cast("dict[str, int]", await self._one(CountFlows(limit)))

    async def next_due(self, flow_types: tuple[str, ...] | None = None) -> float | None:
        """When a claim of these types may next find work (see NextDue), as epoch seconds."""
        return cast("float | None", await self._one(NextDue(flow_types)))

    async def load_history(self, flow_id: str, after: int = 0, limit: int = 1000) -> list[FlowEvent]:
        """The flow's events numbered after `after`, oldest first (storage.events)."""
        return cast("list[FlowEvent]", await self._one(LoadHistory(flow_id, after, limit)))

    async def query_flows(self, query: QueryFlows) -> FlowPage:
        return cast("FlowPage", await self._one(query))

    async def retry_failed(self, flow_id: str) -> None:
        """Resume a FAILED or CANCELLED flow (and its failed children) from its failed step.
        (Not PyErgon's retry_flow, which schedules a retry of a running task.)"""
        await self._one(RetryFlow(flow_id))

    async def fork_flow(self, flow_id: str, new_flow_id: str, from_position: int) -> Scheduled:
        """Start new_flow_id as a copy of flow_id that replays its completed steps before from_position."""
        return cast("Scheduled", await self._one(ForkFlow(flow_id, new_flow_id, from_position)))

    async def put_schedule(self, name: str, cron: str, flow_type: str, args: bytes,
                           missed: str = "once") -> CronSchedule:
        """Create or replace the cron schedule `name` (see PutSchedule)."""
        return cast("CronSchedule", await self._one(PutSchedule(name, cron, flow_type, args, missed)))

    async def list_schedules(self) -> list[CronSchedule]:
        return cast("list[CronSchedule]", await self._one(ListSchedules()))

    async def change_schedule(self, name: str, action: str) -> CronSchedule | None:
        """Pause, resume or delete a schedule (ScheduleNotFoundError if there is none)."""
        return cast("CronSchedule | None", await self._one(ChangeSchedule(name, action)))

    async def prune_flows(self, before: float, statuses: tuple[str, ...] = ("COMPLETE", "FAILED", "CANCELLED"),
                          limit: int = 1000) -> int:
        """Delete up to `limit` flows that ended before `before` (see PruneFlows); returns how many."""
        return cast("int", await self._one(PruneFlows(before, statuses, limit)))

    async def migrate_flows(self, to_version: str | None, *, from_version: str | None = None,
                            flow_ids: tuple[str, ...] | None = None) -> int:
        """Move live flows of from_version, or among flow_ids, to to_version; returns how many moved."""
        return cast("int", await self._one(MigrateFlows(to_version, from_version, flow_ids)))

    async def wait_for_completion(self, flow_id: str, timeout: float | None = None) -> FlowRecord:
        """Wait until the flow is COMPLETE, FAILED or CANCELLED and return its record.

        Raises:
            FlowNotFoundError: no such flow.
            TimeoutExpired: still live after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while True:
            record = await self.get_flow(flow_id)
            if record is None:
                raise FlowNotFoundError(flow_id)
            if record.status in TERMINAL:
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutExpired(f"flow {flow_id!r} still {record.status} after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval)
