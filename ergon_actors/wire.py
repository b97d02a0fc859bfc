"""Journal commands and their results, and the msgpack envelope that carries them.

A command is a frozen dataclass; every store executes them (`ExecutionLog.execute`) and the
journal client sends them over ZeroMQ. Each wire dataclass travels as a msgpack ext type whose
payload is its field values in order; errors travel as (class name, message, attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import msgpack

from . import errors
from .core import Failure, FlowRecord, StepRecord
from .errors import ErgonError, ProtocolError

PROTOCOL_VERSION = 1


# -- commands (nouns) ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScheduleFlow:
    """Create a flow unless flow_id exists (the idempotency key). Result: Scheduled."""

    flow_id: str
    flow_type: str
    args: bytes
    version: str | None = None
    ready_at: float | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimFlows:
    """Lease up to `limit` runnable flows to a worker. Result: list[Claim].

    Runnable: PENDING or SUSPENDED with ready_at due, or RUNNING with an expired lease. A claim
    bumps the flow's epoch. Re-sending the same request_id returns the same claims. With flow_id
    set only that flow is claimed; `steal` takes it even from a live lease (FlowBusyError if not).
    """

    worker_id: str
    request_id: str
    limit: int
    lease_seconds: float
    flow_types: tuple[str, ...] | None = None
    flow_id: str | None = None
    steal: bool = False


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
    records why the previous attempt failed.
    """

    flow_id: str
    epoch: int
    ready_at: float | None
    attempt: int | None = None
    error: Failure | None = None


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
    FAILED step), or None when the parent is now SUSPENDED until the child ends.
    """

    flow_id: str
    epoch: int
    step: StepRecord
    child: ScheduleFlow


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
    """Result: {status: count} plus "due": flows that are runnable now.

    With `limit`, every count stops at limit (cheap on a big store: limit=1 tells idle from busy).
    """

    limit: int | None = None


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Scheduled:
    flow_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased flow with its journal so far: the worker replays without another round trip."""

    flow: FlowRecord
    steps: tuple[StepRecord, ...]


Command = (ScheduleFlow | ClaimFlows | RenewLeases | ReleaseWorker | AppendStep | FinishFlow
           | SuspendFlow | AwaitSignal | SendSignal | InvokeChild | CancelFlow | WaitingSignals
           | GetFlow | LoadSteps | ListFlows | CountFlows)

# Order is the ext code: append only, never reorder (it is the wire format).
_WIRE_TYPES: tuple[type, ...] = (
    Failure, FlowRecord, StepRecord, Scheduled, Claim,
    ScheduleFlow, ClaimFlows, RenewLeases, ReleaseWorker, AppendStep, FinishFlow, SuspendFlow,
    GetFlow, LoadSteps, ListFlows, CountFlows,
    AwaitSignal, SendSignal, InvokeChild, CancelFlow, WaitingSignals,
)
_EXT_BASE = 64
_CODE = {cls: _EXT_BASE + i for i, cls in enumerate(_WIRE_TYPES)}
_CLASS = {code: cls for cls, code in _CODE.items()}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _WIRE_TYPES}
_ERROR = _EXT_BASE - 1


_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
# One packer without a default hook: _plain() turns every wire dataclass into an ext type first,
# depth-first, so packing never re-enters the packer (and no Packer is built per message).
_PACKER = msgpack.Packer(use_bin_type=True)


def _plain(obj: Any) -> Any:
    cls = type(obj)
    if cls in _SCALARS:
        return obj
    code = _CODE.get(cls)
    if code is not None:
        return msgpack.ExtType(code, _PACKER.pack([_plain(getattr(obj, name)) for name in _FIELDS[cls]]))
    if cls is list or cls is tuple or cls is set or cls is frozenset:
        return [_plain(item) for item in obj]
    if cls is dict:
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, str):  # a StrEnum such as FlowStatus travels as its value
        return str.__str__(obj)
    if isinstance(obj, ErgonError):
        state = {k: v for k, v in vars(obj).items() if type(v) in _SCALARS}
        return msgpack.ExtType(_ERROR, _PACKER.pack([cls.__name__, str(obj), state]))
    raise TypeError(f"cannot send {cls.__qualname__} on the wire")


def _ext_hook(code: int, data: bytes) -> Any:
    cls = _CLASS.get(code)
    if cls is not None:
        values = _unpack(data)
        if cls is Claim:
            values[1] = tuple(values[1])
        return cls(*values)
    if code == _ERROR:
        name, message, state = _unpack(data)
        kind = getattr(errors, name, None)
        if not (isinstance(kind, type) and issubclass(kind, ErgonError)):
            kind = ErgonError
        exc = kind.__new__(kind)
        exc.args = (message,)
        vars(exc).update(state)
        return exc
    raise ProtocolError(f"unknown ext type {code} on the wire")


def _pack(obj: Any) -> bytes:
    return _PACKER.pack(_plain(obj))


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def dumps(obj: Any) -> bytes:
    """Encode wire dataclasses (and builtins) to bytes, e.g. a Failure for the store."""
    return _pack(obj)


def loads(data: bytes) -> Any:
    """Inverse of dumps."""
    return _unpack(data)


def pack(kind: str, body: Any) -> bytes:
    """Encode one envelope: [protocol version, kind, body]."""
    return _pack((PROTOCOL_VERSION, kind, body))


def unpack(frame: bytes) -> tuple[str, Any]:
    """Decode one envelope into (kind, body); ProtocolError for anything malformed."""
    try:
        message = _unpack(frame)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable message ({len(frame)} bytes): {exc}") from None
    if not (isinstance(message, list) and len(message) == 3 and isinstance(message[1], str)):
        raise ProtocolError(f"malformed envelope: {str(message)[:80]}")
    if message[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {message[0]!r} not supported (this side speaks {PROTOCOL_VERSION})")
    return message[1], message[2]
