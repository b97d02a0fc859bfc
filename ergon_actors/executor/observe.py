"""Observers: what a worker tells about each run of a flow and each step body it runs.

A worker given an `Observer` calls `observer.flow(record)` when a run of a claimed flow starts,
`watch.step(...)` when a step's body starts (a step replayed from the journal runs no body and
is not told), and `end(outcome)` on each when it ends. Metrics and traces are observers; with
none, a run costs one `is None` test per step.

Outcomes of a step: "completed", "failed" (its body raised; a retry may follow) or
"interrupted" (a suspension, a drain or a cancellation unwound it). Outcomes of a flow's run:
its status when the run ended ("COMPLETE", "FAILED", "CANCELLED", "SUSPENDED"), "halted" (its
worker drained), "fenced" (its lease moved on) or "error" (a journal call failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..core import FlowRecord

__all__ = ["Observer", "FlowWatch", "StepWatch", "combine"]


class StepWatch(Protocol):
    """One step body being run."""

    def end(self, outcome: str) -> None:
        """The body returned ("completed"), raised ("failed") or was unwound ("interrupted")."""


class FlowWatch(Protocol):
    """One run of one claimed flow."""

    def step(self, position: int, name: str, try_number: int) -> StepWatch:
        """A step's body starts: `try_number` is 1 + its failed tries so far."""

    def end(self, outcome: str) -> None:
        """The run ended (see the module's docstring for the outcomes)."""


class Observer(Protocol):
    """Told about every run of a flow and every step body a worker runs."""

    def flow(self, flow: FlowRecord) -> FlowWatch:
        """A run of `flow` (as claimed: its owner, epoch and attempt) starts."""


class _Each:
    """Ends each of several watches."""

    __slots__ = ("_watches",)

    def __init__(self, watches: Sequence[StepWatch]) -> None:
        self._watches = watches

    def end(self, outcome: str) -> None:
        for watch in self._watches:
            watch.end(outcome)


class _Flows(_Each):
    __slots__ = ("_flows",)

    def __init__(self, watches: list[FlowWatch]) -> None:
        super().__init__(watches)
        self._flows = watches

    def step(self, position: int, name: str, try_number: int) -> StepWatch:
        return _Each([w.step(position, name, try_number) for w in self._flows])


class _All:
    __slots__ = ("_observers",)

    def __init__(self, observers: list[Observer]) -> None:
        self._observers = observers

    def flow(self, flow: FlowRecord) -> FlowWatch:
        return _Flows([o.flow(flow) for o in self._observers])


def combine(observers: Sequence[Observer | None]) -> Observer | None:
    """One observer telling each of `observers` (None ones left out); None if there are none."""
    chosen = [o for o in observers if o is not None]
    if len(chosen) <= 1:
        return chosen[0] if chosen else None
    return _All(chosen)
