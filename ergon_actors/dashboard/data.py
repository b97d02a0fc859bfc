"""What the overview shows, read from the store and the supervisors' status snapshots: counts by
status sampled over time, rates, failures, quarantined flows and the health of the store."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import ops
from ..core import FlowRecord, FlowStatus
from ..errors import ErgonError
from ..runtime.snapshot import Snapshot
from ..storage.base import LogBase

__all__ = ["Sampler", "Overview", "overview", "Sample"]

Sample = tuple[float, dict[str, int]]
POISON = "PoisonFlowError"


class Sampler:
    """Flow counts by status, one sample per call of add(), the newest `keep` of them."""

    def __init__(self, keep: int = 720) -> None:
        self.samples: deque[Sample] = deque(maxlen=keep)

    def add(self, at: float, counts: dict[str, int]) -> None:
        self.samples.append((at, dict(counts)))

    def rate(self, status: str, window: float = 60.0) -> float | None:
        """Flows per second that reached `status` over the last `window` seconds (None: too few samples)."""
        if len(self.samples) < 2:
            return None
        newest_at, newest = self.samples[-1]
        oldest_at, oldest = next(((t, c) for t, c in self.samples if t >= newest_at - window), self.samples[0])
        if newest_at - oldest_at <= 0:
            return None
        return max(0, newest.get(status, 0) - oldest.get(status, 0)) / (newest_at - oldest_at)


@dataclass(frozen=True, slots=True)
class Overview:
    counts: dict[str, int]
    samples: tuple[Sample, ...]
    completed_rate: float | None
    failed_rate: float | None
    failures: tuple[FlowRecord, ...]      # the newest FAILED flows
    quarantined: tuple[FlowRecord, ...]   # the newest flows FAILED as poison
    supervisors: tuple[Snapshot, ...]
    store_error: str | None               # why the store could not be read
    store_latency: float | None           # seconds the counts took to read


async def overview(store: LogBase, sampler: Sampler, snapshots: Callable[[], list[Snapshot]],
                   shown: int = 8) -> Overview:
    """The overview now; a store that cannot be read is reported, not raised."""
    started = time.monotonic()
    try:
        counts = await store.count_flows()
        latency = time.monotonic() - started
        sampler.add(time.time(), counts)
        failures = await ops.list_flows(store, ops.FlowFilter(statuses=(FlowStatus.FAILED,)), limit=shown)
        poison = await ops.list_flows(store, ops.FlowFilter(statuses=(FlowStatus.FAILED,), error_contains=POISON),
                                      limit=shown)
    except (ErgonError, OSError) as exc:
        return Overview({}, tuple(sampler.samples), None, None, (), (), tuple(snapshots()),
                        f"{type(exc).__name__}: {exc}", None)
    return Overview(counts, tuple(sampler.samples), sampler.rate(FlowStatus.COMPLETE),
                    sampler.rate(FlowStatus.FAILED), failures.flows, poison.flows, tuple(snapshots()), None,
                    latency)
