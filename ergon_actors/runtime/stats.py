"""The figures actors count for metrics: histograms, a worker's step and flow counts, and their sums
across an actor's incarnations.

Counting costs a few increments per step in the process that runs it; the figures travel to the
supervisor in the heartbeats each actor sends anyway, so collecting them adds no message.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import fields, replace
from typing import Any

from ..core import FlowRecord, FlowStatus
from .messages import Buckets, JournalStats, TypeCount, WorkerStats

__all__ = ["STEP_SECONDS", "FLOW_SECONDS", "COMMIT_SECONDS", "BATCH_COMMANDS", "Histogram", "WorkerCounts",
           "add"]

# Upper bounds of the buckets (a value v falls in the first bucket whose bound is >= v; the last
# bucket holds what is past every bound). Both ends of a heartbeat use these.
STEP_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
FLOW_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
                86400.0)
COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)
BATCH_COMMANDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0)
TERMINAL = frozenset({FlowStatus.COMPLETE.value, FlowStatus.FAILED.value, FlowStatus.CANCELLED.value})

Stats = WorkerStats | JournalStats


class Histogram:
    """Counts values into fixed buckets and sums them."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> Buckets:
        return Buckets(tuple(self.counts), self.total)


class WorkerCounts:
    """An executor Observer counting the step bodies a worker runs and the flows that end in it."""

    def __init__(self) -> None:
        self.steps = {"started": 0, "completed": 0, "failed": 0}
        self.step_seconds = Histogram(STEP_SECONDS)
        self.flow_seconds = Histogram(FLOW_SECONDS)
        self.ended: dict[tuple[str, str], int] = {}

    def flow(self, flow: FlowRecord) -> _FlowCount:
        return _FlowCount(self, flow)

    def fill(self, stats: WorkerStats) -> WorkerStats:
        """`stats` with these counts."""
        s = self.steps
        return replace(stats, steps_started=s["started"], steps_completed=s["completed"], steps_failed=s["failed"],
                       step_seconds=self.step_seconds.buckets(), flow_seconds=self.flow_seconds.buckets(),
                       ended=tuple(TypeCount(t, status, n) for (t, status), n in self.ended.items()))


class _FlowCount:
    __slots__ = ("counts", "flow")

    def __init__(self, counts: WorkerCounts, flow: FlowRecord) -> None:
        self.counts = counts
        self.flow = flow

    def step(self, position: int, name: str, try_number: int) -> _StepCount:
        self.counts.steps["started"] += 1
        return _StepCount(self.counts)

    def end(self, outcome: str) -> None:
        if outcome in TERMINAL:
            counts, flow = self.counts, self.flow
            counts.flow_seconds.observe(max(0.0, time.time() - flow.created_at))
            key = (flow.flow_type, outcome)
            counts.ended[key] = counts.ended.get(key, 0) + 1


class _StepCount:
    __slots__ = ("counts", "started")

    def __init__(self, counts: WorkerCounts) -> None:
        self.counts = counts
        self.started = time.perf_counter()

    def end(self, outcome: str) -> None:
        if outcome != "interrupted":
            self.counts.steps[outcome] += 1
            self.counts.step_seconds.observe(time.perf_counter() - self.started)


# Figures that are a state now, not a count: a sum across incarnations takes the newest.
_STATES = frozenset({"running", "largest", "store_failing_since", "store_error", "in_flight"})


def add(earlier: Stats | None, later: Stats) -> Stats:
    """`later` with the counts of `earlier` (an earlier incarnation's, or their sum) added to its own."""
    if earlier is None:
        return later
    return replace(later, **{f.name: _sum(getattr(earlier, f.name), getattr(later, f.name))
                             for f in fields(later) if f.name not in _STATES})


def _sum(a: Any, b: Any) -> Any:
    if isinstance(b, Buckets):
        if len(a.counts) != len(b.counts):  # only one of them has counted yet
            return b if b.counts else a
        return Buckets(tuple(x + y for x, y in zip(a.counts, b.counts, strict=True)), a.total + b.total)
    if isinstance(b, tuple):
        merged: dict[tuple[str, str], int] = {}
        for item in (*a, *b):
            merged[item.flow_type, item.status] = merged.get((item.flow_type, item.status), 0) + item.count
        return tuple(TypeCount(t, s, n) for (t, s), n in merged.items())
    return a + b
