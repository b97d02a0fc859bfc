"""Where a run left a flow: Completed (with its result, or the exception it failed with) or
Suspended (with the reason: a timer, a signal or a child flow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import Failure, FlowRecord, FlowStatus
from ..errors import FlowFailedError

__all__ = ["Outcome", "Completed", "Suspended", "SuspendReason", "FlowOutcome", "is_completed",
           "is_suspended"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a run left the flow: COMPLETE with a result, FAILED with an error, or SUSPENDED.

    `Executor.run` returns its subclasses: `Completed` or `Suspended`.
    """

    flow_id: str
    status: str
    result: Any = None
    error: Failure | None = None

    @property
    def is_complete(self) -> bool:
        return self.status == FlowStatus.COMPLETE

    @property
    def is_suspended(self) -> bool:
        return self.status == FlowStatus.SUSPENDED

    def unwrap(self) -> Any:
        """The result; raises FlowFailedError if the flow did not complete."""
        if self.status != FlowStatus.COMPLETE:
            error = self.error or Failure("", "")
            raise FlowFailedError(self.flow_id, self.status, error.type_name, error.message)
        return self.result

    @classmethod
    def of(cls, record: FlowRecord) -> Completed | Suspended:
        """The outcome a stored flow stands at."""
        if record.status == FlowStatus.COMPLETE:
            return Completed(record.value, flow_id=record.flow_id)
        if FlowStatus(record.status).is_terminal:
            return Completed.of_failure(record.flow_id, record.status, record.error)
        waiting = record.waiting_on or ""
        signal = waiting.partition(":")[2] if waiting.startswith("signal:") else None
        return Suspended(SuspendReason(record.flow_id, 0, signal), status=record.status)


@dataclass(frozen=True, slots=True)
class SuspendReason:
    """Why a flow suspended: a timer (no signal_name) or a signal; `step` is the step that waits
    (0: the flow's own body)."""

    flow_id: Any
    step: int
    signal_name: str | None = None

    def is_timer(self) -> bool:
        return self.signal_name is None

    def is_signal(self) -> bool:
        return self.signal_name is not None

    def __str__(self) -> str:
        if self.signal_name is None:
            return f"Timer(flow_id={self.flow_id}, step={self.step})"
        return f"Signal(flow_id={self.flow_id}, step={self.step}, signal_name={self.signal_name!r})"


class Completed(Outcome):
    """A flow that ended: `result` is its value, or the exception it failed with."""

    __slots__ = ()

    def __init__(self, result: Any = None, *, flow_id: str = "", status: str | None = None,
                 error: Failure | None = None) -> None:
        if status is None:
            status = FlowStatus.FAILED if isinstance(result, BaseException) else FlowStatus.COMPLETE
        for name, value in (("flow_id", flow_id), ("status", status), ("result", result), ("error", error)):
            object.__setattr__(self, name, value)

    @classmethod
    def of_failure(cls, flow_id: str, status: str, error: Failure | None) -> Completed:
        """A FAILED or CANCELLED flow; its result is the exception rebuilt from `error`."""
        error = error or Failure("builtins:RuntimeError", f"flow ended {status}")
        return cls(error.to_exception(), flow_id=flow_id, status=status, error=error)

    def is_success(self) -> bool:
        return not isinstance(self.result, BaseException)

    def is_failure(self) -> bool:
        return isinstance(self.result, BaseException)

    def __str__(self) -> str:
        if self.is_success():
            return f"Completed(success={self.result!r})"
        return f"Completed(error={type(self.result).__name__}: {self.result})"


class Suspended(Outcome):
    """A flow waiting for a timer, a signal or a child flow; `reason` says which."""

    __slots__ = ("reason",)
    reason: SuspendReason

    def __init__(self, reason: SuspendReason, *, flow_id: str | None = None,
                 status: str = FlowStatus.SUSPENDED, error: Failure | None = None) -> None:
        for name, value in (("flow_id", str(reason.flow_id) if flow_id is None else flow_id),
                            ("status", status), ("result", None), ("error", error), ("reason", reason)):
            object.__setattr__(self, name, value)

    def __str__(self) -> str:
        return f"Suspended({self.reason})"


FlowOutcome = Completed | Suspended


def is_completed(outcome: object) -> bool:
    return isinstance(outcome, Completed)


def is_suspended(outcome: object) -> bool:
    return isinstance(outcome, Suspended)
