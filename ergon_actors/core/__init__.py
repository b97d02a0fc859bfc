"""Plain types shared by every layer: statuses, journal records, failures, retry policy."""

from __future__ import annotations

import builtins
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, cast

from .. import codec, errors
from ..errors import ChildFlowError, StepError
from .models import (CallType, FlowType, Invocation, InvocationStatus, InvokableFlow, ScheduledFlow, SignalInfo,
                     TimerInfo, get_flow_type_id)

__all__ = [
    "FlowStatus", "TaskStatus", "StepStatus", "TERMINAL", "Failure", "Crash", "FlowRecord", "StepRecord",
    "RetryPolicy", "RetryableError",
    # PyErgon's names
    "Invocation", "InvocationStatus", "ScheduledFlow", "TimerInfo", "SignalInfo", "ChildFlowError",
    "CallType", "FlowType", "InvokableFlow", "get_flow_type_id",
]


class FlowStatus(StrEnum):
    """Where a flow is in its life. PENDING, SUSPENDED (timer, signal, retry) and RUNNING are live."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """COMPLETE, FAILED or CANCELLED: the flow will not run again."""
        return self in TERMINAL


TaskStatus = FlowStatus  # PyErgon's name for the same thing
TERMINAL = frozenset({FlowStatus.COMPLETE, FlowStatus.FAILED, FlowStatus.CANCELLED})


class StepStatus(StrEnum):
    """Outcome of one journaled step."""

    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Failure:
    """An exception as data: it crosses the wire and sits in the store, never pickled."""

    type: str
    message: str
    retryable: bool | None = None
    traceback: str = ""
    args: bytes | None = None  # codec-encoded exception args, when they encode

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        kind = type(exc)
        retryable = None
        check = getattr(exc, "is_retryable", None)
        if callable(check):
            retryable = bool(check())
        try:
            args = codec.encode(tuple(exc.args))
        except Exception:
            args = None
        tb = "".join(traceback.format_exception(exc)) if exc.__traceback__ else ""
        return cls(f"{kind.__module__}:{kind.__qualname__}", str(exc), retryable, tb[-8000:], args)

    def to_exception(self) -> BaseException:
        """Rebuild the exception if its class is a builtin, ours or registered; else a StepError."""
        module, _, qualname = self.type.partition(":")
        if module == "ergon_actors.errors":  # ours: same class, message and retryability
            kind = getattr(errors, qualname, None)
            if isinstance(kind, type) and issubclass(kind, errors.ErgonError):
                exc = kind.__new__(kind)
                exc.args = (self.message,)
                if self.retryable is not None:
                    vars(exc)["retryable"] = self.retryable
                return exc
        kind = getattr(builtins, qualname, None) if module == "builtins" else codec.resolve_class(self.type)
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                # from_exception stored exc.args, a tuple
                args = (self.message,) if self.args is None else cast(tuple[object, ...], codec.decode(self.args))
                return kind(*args)
            except Exception:
                pass
        return StepError(self.type, self.message, self.retryable)

    @classmethod
    def cancelled(cls, flow_id: str) -> Failure:
        """The failure a cancelled flow ends with."""
        return cls("ergon_actors.errors:FlowCancelledError", f"flow {flow_id!r} was cancelled")

    @property
    def is_cancellation(self) -> bool:
        return self.type == "ergon_actors.errors:FlowCancelledError"

    @property
    def type_name(self) -> str:
        return self.type.rpartition(":")[2]

    @property
    def is_poison(self) -> bool:
        """True for the failure of a flow quarantined because it kept crashing its worker."""
        return self.type == "ergon_actors.errors:PoisonFlowError"


@dataclass(frozen=True, slots=True)
class Crash:
    """One unplanned death of a worker while it held the flow (recorded by RecordCrash)."""

    at: float
    worker_id: str
    cause: str  # "exit", "signal", "hang" (killed by the hang check) or "memory" (over max_rss)
    exit_code: int | None
    signal: int | None
    position: int  # the step in flight: the first position without a COMPLETE journal entry
    step: str | None  # its name, when the journal has an entry at that position
    alone: bool  # the worker held only this flow, so the crash is blamed on it


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One flow as the store holds it."""

    flow_id: str
    flow_type: str
    args: bytes
    status: str = FlowStatus.PENDING
    version: str | None = None
    attempt: int = 1
    epoch: int = 0
    owner: str | None = None
    lease_expires: float | None = None
    ready_at: float | None = None
    result: bytes | None = None
    error: Failure | None = None
    parent_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    waiting_on: str | None = None  # while SUSPENDED: "signal:NAME", "child:FLOW_ID", "timer:NAME", "retry:STEP"
    cancel_requested: bool = False
    crashes: tuple[Crash, ...] = ()  # its workers' deaths while they held it, oldest first
    suspect: int = 0  # crashed: runs next in a group of at most this many flows, until a run ends cleanly

    @property
    def value(self) -> object:
        """The decoded result of a COMPLETE flow (None otherwise)."""
        return None if self.result is None else codec.decode(self.result)

    @property
    def blamed(self) -> int:
        """Crashes blamed on this flow: those of a worker that held it alone."""
        return sum(1 for crash in self.crashes if crash.alone)

    @property
    def quarantined(self) -> bool:
        """FAILED as poison: it crashed its worker max_crashes times running alone."""
        return self.status == FlowStatus.FAILED and self.error is not None and self.error.is_poison


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One journaled step, keyed by its position in the flow."""

    position: int
    name: str
    args_hash: int
    status: str = StepStatus.COMPLETE
    result: bytes | None = None
    error: Failure | None = None
    attempt: int = 1
    completed_at: float = 0.0
    tries: int = 1  # runs of this step in this attempt (step retry policy)
    retry_at: float | None = None  # on a FAILED step: when its next try is due

    @property
    def value(self) -> object:
        """The decoded result of a COMPLETE step (None otherwise)."""
        return None if self.result is None else codec.decode(self.result)


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """How often and how fast a failed flow or step is tried again.

    Attempt n (1-based) that failed waits initial_delay * multiplier**(n-1) seconds, at most
    max_delay. PyErgon's names give the delays in milliseconds: `RetryPolicy(max_attempts=3,
    initial_delay_ms=1000, max_delay_ms=30000, backoff_multiplier=2.0)`.
    """

    max_attempts: int
    initial_delay: float
    multiplier: float
    max_delay: float

    NONE: ClassVar[RetryPolicy]
    STANDARD: ClassVar[RetryPolicy]
    AGGRESSIVE: ClassVar[RetryPolicy]

    def __init__(self, max_attempts: int = 1, initial_delay: float | None = None,
                 multiplier: float | None = None, max_delay: float | None = None, *,
                 initial_delay_ms: float | None = None, max_delay_ms: float | None = None,
                 backoff_multiplier: float | None = None) -> None:
        initial = _seconds("initial_delay", initial_delay, initial_delay_ms, 1.0)
        longest = _seconds("max_delay", max_delay, max_delay_ms, 60.0)
        if multiplier is not None and backoff_multiplier is not None:
            raise ValueError("give multiplier or backoff_multiplier, not both")
        factor = multiplier if multiplier is not None else backoff_multiplier
        factor = 2.0 if factor is None else factor
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if initial < 0 or longest < 0 or factor < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")
        for name, value in (("max_attempts", max_attempts), ("initial_delay", initial),
                            ("multiplier", factor), ("max_delay", longest)):
            object.__setattr__(self, name, value)

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
        return min(self.initial_delay * self.multiplier ** (attempt - 1), self.max_delay)

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """True when `exc` from attempt `attempt` may be retried under this policy."""
        if attempt >= self.max_attempts:
            return False
        check = getattr(exc, "is_retryable", None)
        return bool(check()) if callable(check) else True

    # PyErgon's names, in milliseconds

    @classmethod
    def with_max_attempts(cls, max_attempts: int) -> RetryPolicy:
        """`max_attempts` with the standard delays (1 s, doubling, at most 30 s)."""
        return cls(max_attempts, initial_delay=1.0, multiplier=2.0, max_delay=30.0)

    @property
    def initial_delay_ms(self) -> int:
        return round(self.initial_delay * 1000)

    @property
    def max_delay_ms(self) -> int:
        return round(self.max_delay * 1000)

    @property
    def backoff_multiplier(self) -> float:
        return self.multiplier

    def delay_for_attempt(self, attempt: int) -> int | None:
        """Milliseconds to wait after failed attempt `attempt`; None when it was the last one."""
        if attempt >= self.max_attempts:
            return None
        return int(min(self.initial_delay_ms * self.multiplier ** (attempt - 1), self.max_delay_ms))


def _seconds(name: str, seconds: float | None, millis: float | None, default: float) -> float:
    if seconds is not None and millis is not None:
        raise ValueError(f"give {name} (seconds) or {name}_ms (milliseconds), not both")
    if millis is not None:
        return millis / 1000
    return default if seconds is None else seconds


RetryPolicy.NONE = RetryPolicy(max_attempts=1)
RetryPolicy.STANDARD = RetryPolicy(max_attempts=3, initial_delay=1.0, multiplier=2.0, max_delay=30.0)
RetryPolicy.AGGRESSIVE = RetryPolicy(max_attempts=10, initial_delay=0.1, multiplier=1.5, max_delay=10.0)


class RetryableError(Exception):
    """Base for user errors that decide whether a retry may help; retryable unless overridden."""

    def is_retryable(self) -> bool:
        return True
