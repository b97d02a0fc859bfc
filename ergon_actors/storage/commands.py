"""The journal's commands and their results, and the codec that carries them between actors.

A command is a frozen dataclass; every store executes them (`ExecutionLog.execute`) and the
journal client sends them to the journal actor over ZeroMQ. `pack` and `unpack` encode the
envelopes of that traffic; `wire.Codec` decodes them bounded and checks every field's type, so
a store never sees a malformed command. What the stores keep on disk is encoded by
`storage.records`, not by this codec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from ..core import Crash, Failure, FlowRecord, StepRecord
from ..core.queues import QueueLimits, QueueState
from ..wire import Codec
from .events import FlowEvent
from .upkeep_commands import ChangeSchedule, CronSchedule, FireSchedule, ListSchedules, PruneFlows, PutSchedule

__all__ = ["ScheduleFlow", "ClaimFlows", "RenewLeases", "ReleaseWorker", "AppendStep", "FinishFlow",
           "SuspendFlow", "AwaitSignal", "SendSignal", "InvokeChild", "CancelFlow", "WaitingSignals",
           "GetFlow", "LoadSteps", "ListFlows", "CountFlows", "NextDue", "RecordCrash", "PutRecord", "ScanRecords",
           "ResetStore", "LoadHistory", "QueryFlows", "RetryFlow", "ForkFlow", "MigrateFlows", "DeclareQueue",
           "QueueStats", "FlowPage", "Scheduled", "Claim",
           "PutSchedule", "ListSchedules", "ChangeSchedule", "FireSchedule", "PruneFlows", "CronSchedule", "Command",
           "COMMAND_TYPES", "EXT_TYPES", "CODEC", "pack", "unpack", "pack_within"]

# -- commands (nouns) ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScheduleFlow:
    """Create a flow unless flow_id exists (the idempotency key). Result: Scheduled.

    queue: a named queue (None: the default queue, which has no limits); priority orders its
    flows (higher first, FIFO within); key is the flow's concurrency key in it. With dedup_id,
    a live (not yet ended) flow of the same queue with that dedup_id is returned instead of
    creating one (Scheduled names it, created False).
    """

    flow_id: str
    flow_type: str
    args: bytes
    version: str | None = None
    ready_at: float | None = None
    parent_id: str | None = None
    queue: str | None = None
    priority: int = 0
    key: str | None = None
    dedup_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimFlows:
    """Lease up to `limit` runnable flows to a worker. Result: list[Claim].

    Runnable: PENDING or SUSPENDED with ready_at due, or RUNNING with an expired lease. A claim
    bumps the flow's epoch. Re-sending the same request_id returns the same claims. With flow_id
    set only that flow is claimed; `steal` takes it even from a live lease (FlowBusyError if not).

    Suspects (flows whose worker died) run in groups: while one of the worker's flow types is
    due, a claim without `solo` (the worker runs nothing now) claims nothing, so busy workers
    take no new flows until one is idle; a solo claim takes the earliest due suspect and the next
    due suspects whose group size is at least its own, up to its group size, and nothing else. A
    claim by flow_id takes its flow either way.

    With `version` set (the code version the worker serves) only flows of that version or of
    none are claimed, and a flow of none takes that version as it is claimed: it is pinned to
    the code it started on. Without it every flow is claimed and none is pinned. A claim by
    flow_id ignores it.
    """

    worker_id: str
    request_id: str
    limit: int
    lease_seconds: float
    flow_types: tuple[str, ...] | None = None
    flow_id: str | None = None
    steal: bool = False
    solo: bool = False
    version: str | None = None


@dataclass(frozen=True, slots=True)
class RenewLeases:
    """Extend the leases of worker_id's RUNNING flows among flow_ids (all of them if None).

    Result: number renewed. Workers name the flows they run, so a flow leased by an answer
    that never reached its worker is not kept alive: its lease lapses and it runs elsewhere.
    """

    worker_id: str
    lease_seconds: float
    flow_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ReleaseWorker:
    """Return every RUNNING flow of worker_id to PENDING at once. Result: number released."""

    worker_id: str


@dataclass(frozen=True, slots=True)
class RecordCrash:
    """Record an unplanned death of worker_id (cause: "exit", "signal", "hang" or "memory")
    against each RUNNING flow it held. Result: those flows as they are now (none on a re-send).

    Each flow gets a Crash naming its step in flight. A crash of a worker that held only that
    flow is blamed on it; a flow with max_crashes blamed crashes is quarantined: FAILED with a
    PoisonFlowError. Every other flow is PENDING again as a suspect whose group size is a quarter
    of the flows the worker held (rounded up, never more than its size before), due after a
    random delay of up to 50 ms so that flows released together do not wake together.
    """

    worker_id: str
    exit_code: int | None
    signal: int | None
    cause: str
    max_crashes: int


@dataclass(frozen=True, slots=True)
class AppendStep:
    """Journal a step. Result: None. A COMPLETE step is never overwritten (a re-send is a no-op)."""

    flow_id: str
    epoch: int
    step: StepRecord


@dataclass(frozen=True, slots=True)
class FinishFlow:
    """End a flow COMPLETE, FAILED or CANCELLED. Result: None. Idempotent for its epoch."""

    flow_id: str
    epoch: int
    status: str
    result: bytes | None = None
    error: Failure | None = None


@dataclass(frozen=True, slots=True)
class SuspendFlow:
    """Park a flow until ready_at (None: until woken). Result: None.

    With attempt set, the flow starts that attempt when it runs again (a retry), and error
    records why the previous attempt failed. waiting_on names what the flow waits for
    ("timer:NAME", "retry:STEP"), kept while it is SUSPENDED.
    """

    flow_id: str
    epoch: int
    ready_at: float | None
    attempt: int | None = None
    error: Failure | None = None
    waiting_on: str | None = None


@dataclass(frozen=True, slots=True)
class AwaitSignal:
    """Take the signal `signal` for the step at step.position, or suspend the flow until it comes.

    Result: the journaled StepRecord (the signal's payload as its result), or None when the flow
    is now SUSPENDED waiting for it (until ready_at, if set: the wait's timeout).
    """

    flow_id: str
    epoch: int
    step: StepRecord
    signal: str
    ready_at: float | None = None


@dataclass(frozen=True, slots=True)
class SendSignal:
    """Store a signal and wake the flow waiting for it. Result: False if the name was already
    sent (a signal is delivered once)."""

    name: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class InvokeChild:
    """Schedule `child` (unless it exists) and wait for it at step.position.

    Result: the journaled StepRecord once the child has ended (its result, or its error as a
    FAILED step), or None when the parent is now SUSPENDED until the child ends (or until
    ready_at, if set: the parent's own timeout).
    """

    flow_id: str
    epoch: int
    step: StepRecord
    child: ScheduleFlow
    ready_at: float | None = None


@dataclass(frozen=True, slots=True)
class CancelFlow:
    """Cancel a flow and its live children. Result: the flow's status afterwards (RUNNING means
    cancel requested: it stops at its next step boundary)."""

    flow_id: str


@dataclass(frozen=True, slots=True)
class WaitingSignals:
    """Result: the names of the signals that suspended flows wait for."""

    limit: int = 1000


@dataclass(frozen=True, slots=True)
class GetFlow:
    """Result: the FlowRecord, or None."""

    flow_id: str


@dataclass(frozen=True, slots=True)
class LoadSteps:
    """Result: the flow's StepRecords by position."""

    flow_id: str


@dataclass(frozen=True, slots=True)
class ListFlows:
    """Result: up to `limit` FlowRecords, oldest first, optionally of one status."""

    status: str | None = None
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class CountFlows:
    """Result: {status: count} plus "due": flows that are runnable now, and "quarantined" (FAILED
    as poison, counted among FAILED too) when there are any.

    With `limit`, every count stops at limit (cheap on a big store: limit=1 tells idle from busy).
    """

    limit: int | None = None


@dataclass(frozen=True, slots=True)
class NextDue:
    """When a claim of `flow_types` (None: any type) may next find work. Result: the earliest
    ready_at of a waiting flow or lease expiry of a running one, as epoch seconds (possibly
    past), or None when no flow of those types becomes runnable by time alone (it waits for a
    signal or child, or there is none). An idle worker sleeps until then instead of polling."""

    flow_types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PutRecord:
    """Set the record `key` (value None: delete it). PyErgon's store API keeps its invocations,
    timers and suspension results as records. With `check`, only if the record's value is
    `expected` now (None: absent). Result: True if written."""

    key: str
    value: bytes | None
    check: bool = False
    expected: bytes | None = None


@dataclass(frozen=True, slots=True)
class ScanRecords:
    """Result: [key, value] pairs of the records whose key starts with `prefix`, by key."""

    prefix: str


@dataclass(frozen=True, slots=True)
class ResetStore:
    """Delete every flow, step, signal, record and event. Result: None."""


@dataclass(frozen=True, slots=True)
class QueryFlows:
    """Result: a FlowPage of the flows matching every filter given, in schedule order.

    statuses, flow_types: any of these. created_after, created_before: a range of created_at
    (after inclusive, before exclusive). id_contains: text in the flow_id. error_contains: text
    in the type of the flow's error ("module:Class"). newest_first: the order. cursor: the
    `cursor` of the previous page. A page may hold fewer than `limit` flows before the end (a
    store bounds the work of one call); its cursor is None only at the end.
    """

    statuses: tuple[str, ...] | None = None
    flow_types: tuple[str, ...] | None = None
    created_after: float | None = None
    created_before: float | None = None
    id_contains: str | None = None
    error_contains: str | None = None
    newest_first: bool = True
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RetryFlow:
    """Resume a FAILED or CANCELLED flow, and its failed or cancelled child flows, as a new
    attempt: completed steps replay, the failed step runs again. Result: None; FlowStateError
    if the flow is in another status."""

    flow_id: str


@dataclass(frozen=True, slots=True)
class ForkFlow:
    """Start flow `new_flow_id` with the type and arguments of `flow_id` and copies of its
    completed steps at positions before `from_position`, which it replays instead of running.
    Result: Scheduled (created False, and nothing copied, if new_flow_id exists)."""

    flow_id: str
    new_flow_id: str
    from_position: int


@dataclass(frozen=True, slots=True)
class MigrateFlows:
    """Move the live flows (PENDING, RUNNING or SUSPENDED) of `from_version`, or those among
    `flow_ids`, or those matching both, to `to_version` (None: any worker's), so that workers of
    that version claim them. A RUNNING flow moves for its next claim. Result: the number moved."""

    to_version: str | None
    from_version: str | None = None
    flow_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LoadHistory:
    """Result: the flow's events (storage.events) with seq > after, oldest first, at most limit."""

    flow_id: str
    after: int = 0
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class DeclareQueue:
    """Store a queue's limits, enforced from the next claim on by every journal on the store.
    With `replace` False, only if the queue has none yet. Result: True if written."""

    limits: QueueLimits
    replace: bool = True


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Result: a QueueState per named queue (declared or holding flows), by name."""

    limit: int = 1000


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Scheduled:
    flow_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class FlowPage:
    """One page of QueryFlows: the flows, and the cursor of the next page (None at the end)."""

    flows: tuple[FlowRecord, ...]
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased flow with its journal so far: the worker replays without another round trip."""

    flow: FlowRecord
    steps: tuple[StepRecord, ...]


Command = (ScheduleFlow | ClaimFlows | RenewLeases | ReleaseWorker | AppendStep | FinishFlow
           | SuspendFlow | AwaitSignal | SendSignal | InvokeChild | CancelFlow | WaitingSignals
           | GetFlow | LoadSteps | ListFlows | CountFlows | NextDue | RecordCrash | PutRecord | ScanRecords | ResetStore
           | LoadHistory | QueryFlows | RetryFlow | ForkFlow | MigrateFlows | DeclareQueue | QueueStats | PutSchedule
           | ListSchedules | ChangeSchedule | FireSchedule | PruneFlows)
COMMAND_TYPES: tuple[type, ...] = get_args(Command)

# The wire format: each class's ext code. Never renumber or reuse a code; give a new type a new one.
EXT_TYPES: tuple[tuple[int, type], ...] = (
    (62, NextDue),
    (64, Failure), (65, FlowRecord), (66, StepRecord), (67, Scheduled), (68, Claim),
    (69, ScheduleFlow), (70, ClaimFlows), (71, RenewLeases), (72, ReleaseWorker), (73, AppendStep),
    (74, FinishFlow), (75, SuspendFlow), (76, GetFlow), (77, LoadSteps), (78, ListFlows),
    (79, CountFlows), (80, AwaitSignal), (81, SendSignal), (82, InvokeChild), (83, CancelFlow),
    (84, WaitingSignals), (85, Crash), (86, RecordCrash), (87, PutRecord), (88, ScanRecords),
    (89, ResetStore), (90, FlowEvent), (91, LoadHistory), (92, QueryFlows), (93, FlowPage), (94, RetryFlow),
    (95, ForkFlow), (112, MigrateFlows), (116, QueueLimits), (117, QueueState), (118, DeclareQueue),
    (119, QueueStats),
    (122, CronSchedule), (123, PutSchedule), (124, ListSchedules), (125, ChangeSchedule), (126, FireSchedule),
    (127, PruneFlows),
)
CODEC = Codec(EXT_TYPES)
pack: Callable[[str, Any], bytes] = CODEC.pack
unpack: Callable[[bytes], tuple[str, Any]] = CODEC.unpack
pack_within = CODEC.pack_within
