"""PyErgon's store API over ergon_actors' journal, for programs and tests written for PyErgon.

Reads show the journal as PyErgon does: a flow is a ScheduledFlow, its @flow method is
invocation 0 and its step at position p is invocation p + 1. Invocations, timers and suspension
results written through this API are records of their own (PutRecord/ScanRecords), shown over
the journal's view. Queue operations on a flow (`complete_flow`, `retry_flow`, `resume_flow`)
take the flow over with a new lease epoch first, so a worker still running it is fenced off.
Everything goes through `execute`, so it works on every store and through the journal actor.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import codec
from ..core import (TERMINAL, Failure, FlowRecord, FlowStatus, Invocation, InvocationStatus, RetryPolicy,
                    ScheduledFlow, SignalInfo, StepRecord, TimerInfo)
from ..errors import FlowNotFoundError, StoreError
from .commands import PutRecord, ResetStore, ScanRecords

__all__ = ["PyErgonLogMixin", "remember_entry", "StorageError", "WorkNotificationSource", "TimerNotificationSource"]

StorageError = StoreError  # PyErgon's name


@runtime_checkable
class WorkNotificationSource(Protocol):
    """A store that sets an event when flows may have become runnable (every store here)."""

    def work_notify(self) -> asyncio.Event: ...


@runtime_checkable
class TimerNotificationSource(Protocol):
    """PyErgon's store that announces new timers. None here: a due timer makes its flow
    claimable, and workers claim it like any other flow."""

    def timer_notify(self) -> asyncio.Event: ...


_ENTRIES: dict[str, str] = {}  # flow type -> its @flow method, for invocation 0
_TAKEOVER = "pyergon-store-api"
_LEASE = 300.0


def remember_entry(flow_type: str, method: str | None) -> None:
    """Tell the invocation view the @flow method of a flow type (the Executor and Worker do);
    None: it has several, shown as "run"."""
    if method is not None:
        _ENTRIES[flow_type] = method


def _stamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp)


def _inv_key(flow_id: str, step: int) -> str:
    return f"inv/{flow_id}/{step:010d}"


def _encode_invocation(inv: Invocation) -> bytes:
    fields = asdict(inv)
    fields["status"] = inv.status.value
    policy = inv.retry_policy
    fields["retry_policy"] = None if policy is None else [policy.max_attempts, policy.initial_delay,
                                                          policy.multiplier, policy.max_delay]
    return codec.encode(fields)


def _decode_invocation(data: bytes) -> Invocation:
    fields = dict(codec.decode(data))  # type: ignore[call-overload]
    fields["status"] = InvocationStatus(fields["status"])
    if fields["retry_policy"] is not None:
        fields["retry_policy"] = RetryPolicy(*fields["retry_policy"])
    return Invocation(**fields)


def _step_invocation(flow: FlowRecord, step: StepRecord) -> Invocation:
    status, fire_at, timer = InvocationStatus.COMPLETE, None, None
    if step.name.startswith("timer:"):
        fire_at = _moment(codec.decode(step.result)) if step.result is not None else None  # type: ignore[arg-type]
        timer = step.name[6:]
        if fire_at is not None and fire_at > datetime.now():
            status = InvocationStatus.WAITING_FOR_TIMER
    retryable = None if step.error is None else bool(step.retry_at is not None or step.error.retryable)
    return Invocation(flow.flow_id, flow.flow_id, step.position + 1, flow.flow_type, step.name, b"",
                      step.args_hash, step.result, timestamp=_moment(step.completed_at) or datetime.now(),
                      status=status, attempts=step.tries, is_retryable=retryable,
                      timer_fire_at=fire_at, timer_name=timer)


def _flow_invocation(flow: FlowRecord) -> Invocation:
    waiting = flow.waiting_on or ""
    status = InvocationStatus.COMPLETE if FlowStatus(flow.status).is_terminal else InvocationStatus.PENDING
    if flow.status == FlowStatus.SUSPENDED and waiting.startswith("signal:"):
        status = InvocationStatus.WAITING_FOR_SIGNAL
    retryable = None if flow.error is None else flow.error.retryable
    return Invocation(flow.flow_id, flow.flow_id, 0, flow.flow_type, _ENTRIES.get(flow.flow_type, "run"),
                      flow.args, 0, flow.result, timestamp=_moment(flow.created_at) or datetime.now(),
                      status=status, attempts=flow.attempt, is_retryable=retryable,
                      timer_name=waiting[7:] if waiting.startswith("signal:") else None)


class PyErgonLogMixin:
    """PyErgon's ExecutionLog methods; mixed into every store and the journal client."""

    if TYPE_CHECKING:  # provided by LogBase
        async def _one(self, command: Any) -> Any: ...
        async def get_flow(self, flow_id: str) -> FlowRecord | None: ...
        async def load_steps(self, flow_id: str) -> list[StepRecord]: ...

    # -- records -------------------------------------------------------------------------------

    async def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in await self._one(ScanRecords(prefix))]

    async def _put(self, key: str, value: bytes | None) -> None:
        await self._one(PutRecord(key, value))

    # -- invocations ---------------------------------------------------------------------------

    async def _journal_view(self, flow_id: str) -> dict[int, Invocation]:
        flow = await self.get_flow(flow_id)
        if flow is None:
            return {}
        steps = await self.load_steps(flow_id)
        view = {step.position + 1: _step_invocation(flow, step) for step in steps}
        # Invocation 0 (the @flow method) once the flow has run: it journaled a step, waited,
        # ended or failed an attempt. A flow only queued or just taken has none yet.
        if steps or flow.attempt > 1 or flow.status in (FlowStatus.SUSPENDED, *TERMINAL):
            view[0] = _flow_invocation(flow)
        return view

    async def get_invocations_for_flow(self, flow_id: str) -> list[Invocation]:
        """Every invocation of the flow, by step (0: its @flow method)."""
        view = await self._journal_view(flow_id)
        for _, data in await self._scan(f"inv/{flow_id}/"):
            inv = _decode_invocation(data)
            view[inv.step] = inv
        return [view[step] for step in sorted(view)]

    async def get_invocation(self, flow_id: str, step: int) -> Invocation | None:
        found = await self._scan(_inv_key(flow_id, step))
        if found:
            return _decode_invocation(found[0][1])
        return (await self._journal_view(flow_id)).get(step)

    async def _save(self, inv: Invocation) -> Invocation:
        await self._put(_inv_key(inv.flow_id, inv.step), _encode_invocation(inv))
        return inv

    async def _require(self, flow_id: str, step: int) -> Invocation:
        inv = await self.get_invocation(flow_id, step)
        if inv is None:
            raise FlowNotFoundError(f"{flow_id} (no invocation at step {step})")
        return inv

    async def log_invocation_start(self, flow_id: str, step: int, class_name: str, method_name: str,
                                   parameters: bytes, params_hash: int,
                                   retry_policy: RetryPolicy | None = None) -> Invocation:
        """Record that a step starts; a completed or waiting invocation is returned unchanged."""
        existing = await self.get_invocation(flow_id, step)
        if existing is not None and existing.status is not InvocationStatus.PENDING:
            return existing
        attempts = 1 if existing is None else existing.attempts + 1
        return await self._save(Invocation(flow_id, flow_id, step, class_name, method_name, parameters,
                                           params_hash, status=InvocationStatus.PENDING, attempts=attempts,
                                           retry_policy=retry_policy))

    async def log_invocation_completion(self, flow_id: str, step: int, return_value: bytes,
                                        is_retryable: bool | None = None) -> Invocation:
        inv = await self._require(flow_id, step)
        return await self._save(replace(inv, status=InvocationStatus.COMPLETE, return_value=return_value,
                                        is_retryable=is_retryable, updated_at=datetime.now()))

    async def update_is_retryable(self, flow_id: str, step: int, is_retryable: bool) -> None:
        inv = await self.get_invocation(flow_id, step)
        if inv is not None:
            await self._save(replace(inv, is_retryable=is_retryable, updated_at=datetime.now()))

    async def has_non_retryable_error(self, flow_id: str) -> bool:
        return any(inv.is_retryable is False for inv in await self.get_invocations_for_flow(flow_id))

    async def _recorded_invocations(self) -> list[Invocation]:
        return [_decode_invocation(data) for _, data in await self._scan("inv/")]

    async def get_incomplete_flows(self) -> list[Invocation]:
        """Invocations that have not completed: recorded ones, and invocation 0 of live flows."""
        found = [inv for inv in await self._recorded_invocations() if not inv.is_complete]
        seen = {(inv.flow_id, inv.step) for inv in found}
        for status in (FlowStatus.PENDING, FlowStatus.RUNNING, FlowStatus.SUSPENDED):
            for flow in await self.list_flows(status):  # type: ignore[attr-defined]
                if (flow.flow_id, 0) not in seen:
                    found.append(_flow_invocation(flow))
        return found

    # -- timers and signals --------------------------------------------------------------------

    async def log_timer(self, flow_id: str, step: int, timer_fire_at: datetime,
                        timer_name: str | None = None) -> None:
        inv = await self.get_invocation(flow_id, step)
        if inv is not None:
            await self._save(replace(inv, status=InvocationStatus.WAITING_FOR_TIMER, timer_fire_at=timer_fire_at,
                                     timer_name=timer_name, updated_at=datetime.now()))

    async def get_expired_timers(self, now: datetime) -> list[TimerInfo]:
        due = now.timestamp()
        found = [TimerInfo(inv.flow_id, inv.step, inv.timer_fire_at, inv.timer_name)
                 for inv in await self._recorded_invocations()
                 if inv.status is InvocationStatus.WAITING_FOR_TIMER and inv.timer_fire_at is not None
                 and inv.timer_fire_at.timestamp() <= due]
        return sorted(found, key=lambda t: t.fire_at.timestamp())

    async def claim_timer(self, flow_id: str, step: int) -> bool:
        """Take an expired timer once: True for exactly one caller."""
        key = _inv_key(flow_id, step)
        found = await self._scan(key)
        if not found or _decode_invocation(found[0][1]).status is not InvocationStatus.WAITING_FOR_TIMER:
            return False
        claimed = replace(_decode_invocation(found[0][1]), status=InvocationStatus.PENDING, updated_at=datetime.now())
        return bool(await self._one(PutRecord(key, _encode_invocation(claimed), True, found[0][1])))

    async def get_next_timer_fire_time(self) -> datetime | None:
        """The earliest pending timer: a recorded one, or a flow sleeping in the journal."""
        times = [inv.timer_fire_at for inv in await self._recorded_invocations()
                 if inv.status is InvocationStatus.WAITING_FOR_TIMER and inv.timer_fire_at is not None]
        for flow in await self.list_flows(FlowStatus.SUSPENDED):  # type: ignore[attr-defined]
            if (flow.waiting_on or "timer:").startswith("timer:") and flow.ready_at is not None:
                times.append(datetime.fromtimestamp(flow.ready_at))
        return min(times, key=lambda t: t.timestamp(), default=None)

    async def log_signal(self, flow_id: str, step: int, signal_name: str) -> None:
        inv = await self._require(flow_id, step)
        await self._save(replace(inv, status=InvocationStatus.WAITING_FOR_SIGNAL, timer_name=signal_name,
                                 updated_at=datetime.now()))

    async def get_waiting_signals(self) -> list[SignalInfo]:
        return [SignalInfo(inv.flow_id, inv.step, inv.timer_name) for inv in await self._recorded_invocations()
                if inv.status is InvocationStatus.WAITING_FOR_SIGNAL]

    async def store_suspension_result(self, flow_id: str, step: int, suspension_key: str, result: bytes) -> None:
        await self._put(f"susp/{flow_id}/{step:010d}/{suspension_key}", result)

    async def get_suspension_result(self, flow_id: str, step: int, suspension_key: str) -> bytes | None:
        key = f"susp/{flow_id}/{step:010d}/{suspension_key}"
        return next((v for k, v in await self._scan(key) if k == key), None)

    async def remove_suspension_result(self, flow_id: str, step: int, suspension_key: str) -> None:
        await self._put(f"susp/{flow_id}/{step:010d}/{suspension_key}", None)

    # -- the queue -----------------------------------------------------------------------------

    async def _flow_id(self, task_id: str) -> str:
        found = await self._scan(f"task/{task_id}")
        return found[0][1].decode() if found and found[0][0] == f"task/{task_id}" else task_id

    async def _task_id(self, flow_id: str) -> str:
        found = await self._scan(f"taskof/{flow_id}")
        return found[0][1].decode() if found and found[0][0] == f"taskof/{flow_id}" else flow_id

    async def _scheduled(self, flow: FlowRecord) -> ScheduledFlow:
        status = FlowStatus(flow.status)
        retrying = status == FlowStatus.SUSPENDED and flow.waiting_on is None and flow.error is not None
        if retrying:
            status = FlowStatus.PENDING  # a retry waiting for its delay, as PyErgon shows it
        parent = None if flow.parent_id is None else (flow.parent_id, f"child:{flow.flow_id}")
        return ScheduledFlow(
            await self._task_id(flow.flow_id), flow.flow_id, flow.flow_type, flow.args, status,
            locked_by=flow.owner if status == FlowStatus.RUNNING else None, retry_count=flow.attempt - 1,
            created_at=datetime.fromtimestamp(flow.created_at), updated_at=datetime.fromtimestamp(flow.updated_at),
            error_message=None if flow.error is None else flow.error.message,
            scheduled_for=_moment(flow.ready_at) if status in (FlowStatus.PENDING, FlowStatus.SUSPENDED) else None,
            parent_metadata=parent, version=flow.version,
            completed_at=datetime.fromtimestamp(flow.updated_at) if status.is_terminal else None)

    async def get_scheduled_flow(self, task_id: str) -> ScheduledFlow | None:
        flow = await self.get_flow(await self._flow_id(task_id))
        return None if flow is None else await self._scheduled(flow)

    async def _take(self, flow_id: str, worker_id: str = _TAKEOVER) -> FlowRecord:
        """The flow, RUNNING under a lease of our own (a new epoch) unless it ended."""
        flow = await self.get_flow(flow_id)
        if flow is None:
            raise FlowNotFoundError(flow_id)
        if flow.status in (FlowStatus.PENDING, FlowStatus.SUSPENDED, FlowStatus.RUNNING):
            claims = await self.claim(worker_id, 1, _LEASE, flow_id=flow_id, steal=True)  # type: ignore[attr-defined]
            if claims:
                return claims[0].flow  # type: ignore[no-any-return]
        return flow

    async def enqueue_flow(self, flow: ScheduledFlow) -> str:
        """Queue a flow (its flow_data is stored as given); returns its task_id."""
        parent = None if flow.parent_metadata is None else flow.parent_metadata[0]
        await self.schedule_flow(flow.flow_id, flow.flow_type, flow.flow_data,  # type: ignore[attr-defined]
                                 version=flow.version, ready_at=_stamp(flow.scheduled_for), parent_id=parent)
        if flow.task_id != flow.flow_id:
            await self._put(f"task/{flow.task_id}", flow.flow_id.encode())
            await self._put(f"taskof/{flow.flow_id}", flow.task_id.encode())
        status = FlowStatus(getattr(flow.status, "value", flow.status))
        if status != FlowStatus.PENDING:
            await self._take(flow.flow_id, flow.locked_by or _TAKEOVER)
            if status != FlowStatus.RUNNING:
                await self.complete_flow(flow.task_id, status, flow.error_message)
        return flow.task_id

    async def dequeue_flow(self, worker_id: str) -> ScheduledFlow | None:
        """Lease the next runnable flow to `worker_id`."""
        claims = await self.claim(worker_id, 1, _LEASE)  # type: ignore[attr-defined]
        return await self._scheduled(claims[0].flow) if claims else None

    async def complete_flow(self, task_id: str, status: Any, error_message: str | None = None) -> None:
        """End the flow (COMPLETE, FAILED, CANCELLED) or park it (SUSPENDED: until woken)."""
        status = FlowStatus(getattr(status, "value", status))
        flow = await self._take(await self._flow_id(task_id))
        if flow.status != FlowStatus.RUNNING:
            return
        if status in (FlowStatus.SUSPENDED, FlowStatus.PENDING):
            await self.suspend_flow(flow.flow_id, flow.epoch, None if status == FlowStatus.SUSPENDED  # type: ignore[attr-defined]
                                    else time.time())
            return
        error = None if error_message is None else Failure("builtins:RuntimeError", error_message)
        await self.finish_flow(flow.flow_id, flow.epoch, status, error=error)  # type: ignore[attr-defined]

    async def retry_flow(self, task_id: str, error_message: str, delay: timedelta) -> None:
        """Run the flow again, as its next attempt, after `delay`."""
        flow = await self._take(await self._flow_id(task_id))
        if flow.status == FlowStatus.RUNNING:
            await self.suspend_flow(flow.flow_id, flow.epoch, time.time() + delay.total_seconds(),  # type: ignore[attr-defined]
                                    attempt=flow.attempt + 1, error=Failure("builtins:RuntimeError", error_message))

    async def resume_flow(self, flow_id: str) -> bool:
        """Make a SUSPENDED flow runnable now; False if it was not suspended."""
        flow = await self.get_flow(flow_id)
        if flow is None or flow.status != FlowStatus.SUSPENDED:
            return False
        worker = f"{_TAKEOVER}-{uuid.uuid4().hex[:8]}"
        await self._take(flow_id, worker)
        await self.release_worker(worker)  # type: ignore[attr-defined]
        return True

    async def move_ready_delayed_tasks(self) -> int:
        """Delayed flows are claimable once due without moving: returns how many are due."""
        return int((await self.count_flows()).get("due", 0))  # type: ignore[attr-defined]

    async def wait_for_all(self, task_ids: list[str]) -> list[tuple[str, FlowStatus]]:
        """Wait until every flow ended; (task_id, status) for each."""
        done = []
        for task_id in task_ids:
            record = await self.wait_for_completion(await self._flow_id(task_id))  # type: ignore[attr-defined]
            done.append((task_id, FlowStatus(record.status)))
        return done

    async def reset(self) -> None:
        """Delete every flow, step, signal and record."""
        await self._one(ResetStore())

    def work_notify(self) -> asyncio.Event:
        """An event set whenever flows may have become runnable."""
        event = self.__dict__.get("_work_event")
        if event is None:
            event = self.__dict__["_work_event"] = asyncio.Event()
            self.listen(event)  # type: ignore[attr-defined]
        return event
