"""Flows and journaled steps as the chaos verifier compares them: decoded, with their record kind.

A journal holds five kinds of records, told apart by the name's prefix: a step's result (its
method name), a timer's deadline (`timer:NAME`), a signal wait's deadline (`deadline:NAME`), a
received signal or its timeout (`signal:NAME`), and a child flow's outcome (`child:TYPE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Mapping

from .. import codec
from ..core import Failure, FlowRecord, StepRecord
from ..errors import ErgonError

__all__ = ["StepSummary", "FlowSummary", "record_kind", "RECORD_KINDS", "WALL_CLOCK_KINDS"]

RECORD_KINDS = ("step", "timer", "deadline", "signal", "child")
WALL_CLOCK_KINDS = frozenset({"timer", "deadline"})  # their value is a wall-clock time, not a result


def record_kind(name: str) -> str:
    """The kind of a journal record by its name: step, timer, deadline, signal or child."""
    prefix, sep, _ = name.partition(":")
    return prefix if sep and prefix in RECORD_KINDS else "step"


@dataclass(frozen=True, slots=True)
class StepSummary:
    """One journaled record: name, status, decoded value (or "Type: message" of a failure)."""

    name: str
    status: str
    value: object
    attempt: int = 1
    tries: int = 1
    completed_at: float = 0.0  # when the store committed it (the store's clock)

    @property
    def kind(self) -> str:
        return record_kind(self.name)

    @property
    def label(self) -> str:
        """What the verifier compares with the fault-free run: a wall-clock value is left out."""
        shown = "" if self.kind in WALL_CLOCK_KINDS else f" {self.value!r}"
        return f"{self.name} {self.status}{shown}"

    @classmethod
    def of(cls, step: StepRecord) -> StepSummary:
        value = _decode(step.result) if step.error is None else _failure(step.error)
        return cls(step.name, step.status, value, step.attempt, step.tries, step.completed_at)


@dataclass(frozen=True, slots=True)
class FlowSummary:
    """A flow as the verifier compares it: outcome, final epoch and attempt, decoded records."""

    status: str
    result: object
    error: str | None
    epoch: int
    steps: Mapping[int, StepSummary]
    attempt: int = 1
    finished_at: float = 0.0   # the store's time of its last change (its end, once terminal)
    parent_id: str | None = None

    @classmethod
    def of(cls, flow: FlowRecord, steps: Iterable[StepRecord]) -> FlowSummary:
        return cls(flow.status, _decode(flow.result), _failure(flow.error), flow.epoch,
                   {s.position: StepSummary.of(s) for s in steps}, flow.attempt, flow.updated_at,
                   flow.parent_id)

    @property
    def outcome(self) -> str:
        """Status and result or error, as the report shows it."""
        if self.error is not None:
            return f"{self.status} ({self.error})"
        return f"{self.status} {self.result!r}" if self.status == "COMPLETE" else self.status


def _decode(data: bytes | None) -> object:
    if data is None:
        return None
    try:
        return codec.decode(data)
    except ErgonError:
        return data


def _failure(error: Failure | None) -> str | None:
    return None if error is None else f"{error.type_name}: {error.message}"
