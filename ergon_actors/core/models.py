"""PyErgon's records: a step as an Invocation, a queued flow as a ScheduledFlow, an expired timer.

They are the view PyErgon's store API (`log_invocation_start`, `get_invocation`,
`get_scheduled_flow`, ...) returns over ergon_actors' journal; flows themselves never use them.
Step 0 of a flow is its @flow method; its steps follow from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, TypeVar, runtime_checkable

from .. import codec

__all__ = ["CallType", "InvocationStatus", "Invocation", "ScheduledFlow", "TimerInfo", "SignalInfo", "FlowType",
           "InvokableFlow", "get_flow_type_id"]


class CallType(Enum):
    """How PyErgon calls a step: a first run, a wait, or a resume after the wait."""

    RUN = "RUN"
    AWAIT = "AWAIT"
    RESUME = "RESUME"

    def __str__(self) -> str:
        return self.value


class InvocationStatus(Enum):
    """Where one step (invocation) is: PENDING, waiting for a timer or a signal, or COMPLETE.

    A failed step is COMPLETE too; its `is_retryable` tells a transient from a permanent error.
    """

    PENDING = "PENDING"
    WAITING_FOR_SIGNAL = "WAITING_FOR_SIGNAL"
    WAITING_FOR_TIMER = "WAITING_FOR_TIMER"
    COMPLETE = "COMPLETE"

    @property
    def is_complete(self) -> bool:
        return self is InvocationStatus.COMPLETE

    @property
    def is_waiting(self) -> bool:
        return self in (InvocationStatus.WAITING_FOR_SIGNAL, InvocationStatus.WAITING_FOR_TIMER)

    def __str__(self) -> str:
        return self.value


@dataclass
class Invocation:
    """One step of one flow as PyErgon's store API shows it.

    `parameters` and `return_value` are the stored bytes (ergon_actors' value codec for steps
    the Executor ran; whatever the caller passed for records written through the store API).
    """

    id: str
    flow_id: str
    step: int
    class_name: str
    method_name: str
    parameters: bytes
    params_hash: int
    return_value: bytes | None = None
    timestamp: datetime = field(default_factory=datetime.now)
    status: InvocationStatus = InvocationStatus.PENDING
    attempts: int = 0
    updated_at: datetime = field(default_factory=datetime.now)
    retry_policy: Any = None
    is_retryable: bool | None = None
    timer_fire_at: datetime | None = None
    timer_name: str | None = None

    def __post_init__(self) -> None:
        if self.step < 0:
            raise ValueError(f"step must be >= 0, got {self.step}")
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        if self.status is InvocationStatus.WAITING_FOR_TIMER and self.timer_fire_at is None:
            raise ValueError("an invocation WAITING_FOR_TIMER needs timer_fire_at")

    def is_flow(self) -> bool:
        """True for step 0, the flow's entry method."""
        return self.step == 0

    def get_params_hash(self) -> int:
        return self.params_hash

    def get_retry_policy(self) -> Any:
        return self.retry_policy

    def get_is_retryable(self) -> bool | None:
        return self.is_retryable

    def increment_attempts(self) -> None:
        self.attempts += 1

    def _touch(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.updated_at = datetime.now()

    def set_status(self, status: InvocationStatus) -> None:
        self._touch(status=status)

    def set_return_value(self, return_value: bytes) -> None:
        self._touch(return_value=return_value)

    def set_is_retryable(self, is_retryable: bool | None) -> None:
        self._touch(is_retryable=is_retryable)

    def set_timer_fire_at(self, fire_at: datetime | None) -> None:
        self._touch(timer_fire_at=fire_at)

    def set_timer_name(self, name: str | None) -> None:
        self._touch(timer_name=name)

    def deserialize_parameters(self, type_: type | None = None) -> Any:
        """The parameters decoded with ergon_actors' value codec (never unpickled)."""
        return codec.decode(self.parameters)

    def deserialize_return_value(self, type_: type | None = None) -> Any:
        """The return value decoded with ergon_actors' value codec (never unpickled), or None."""
        return None if self.return_value is None else codec.decode(self.return_value)

    def is_timer_expired(self) -> bool:
        if self.timer_fire_at is None:
            return False
        now = datetime.now(self.timer_fire_at.tzinfo)
        return now >= self.timer_fire_at

    @property
    def is_complete(self) -> bool:
        return self.status.is_complete

    @property
    def is_waiting(self) -> bool:
        return self.status.is_waiting

    def __repr__(self) -> str:
        return (f"Invocation(id={self.id!r}, flow_id={self.flow_id!r}, step={self.step}, "
                f"method_name={self.method_name!r}, status={self.status}, attempts={self.attempts})")


@dataclass
class ScheduledFlow:
    """A queued flow as PyErgon's store API shows it; task_id is its flow_id unless given."""

    task_id: str
    flow_id: str
    flow_type: str
    flow_data: bytes
    status: Any  # a TaskStatus
    locked_by: str | None = None
    retry_count: int = 0
    created_at: datetime = field(default_factory=datetime.now)
    updated_at: datetime = field(default_factory=datetime.now)
    error_message: str | None = None
    scheduled_for: datetime | None = None
    parent_metadata: tuple[str, str] | None = None
    retry_policy: dict[str, Any] | None = None
    version: str | None = None
    claimed_at: datetime | None = None
    completed_at: datetime | None = None

    def __repr__(self) -> str:
        return (f"ScheduledFlow(task_id={self.task_id!r}, flow_id={self.flow_id!r}, "
                f"flow_type={self.flow_type!r}, status={self.status}, locked_by={self.locked_by!r}, "
                f"retry_count={self.retry_count})")


@dataclass(frozen=True)
class TimerInfo:
    """An expired timer: the flow and step waiting on it."""

    flow_id: str
    step: int
    fire_at: datetime
    timer_name: str | None = None


@dataclass(frozen=True)
class SignalInfo:
    """A step waiting for a signal."""

    flow_id: str
    step: int
    signal_name: str | None = None


@runtime_checkable
class FlowType(Protocol):
    """A flow class or instance with a stable type name: @flow_type gives every flow one."""

    @staticmethod
    def type_id() -> str: ...


Output = TypeVar("Output", covariant=True)


@runtime_checkable
class InvokableFlow(Protocol[Output]):
    """PyErgon's protocol of a flow invoked as a child that names its result type."""

    @staticmethod
    def type_id() -> str: ...

    @staticmethod
    def output_type() -> type[Output]: ...


def get_flow_type_id(flow: object) -> str:
    """The type name of a flow class or instance: its type_id(), else its class name."""
    type_id = getattr(flow, "type_id", None)
    if callable(type_id):
        return str(type_id())
    return flow.__name__ if isinstance(flow, type) else type(flow).__name__
