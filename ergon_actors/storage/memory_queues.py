"""The in-memory store's named queues: their limits, and which due flows a claim may take."""

from __future__ import annotations

from ..core import FlowRecord, FlowStatus
from ..core.queues import QueueLimits, QueueState
from .commands import ClaimFlows, DeclareQueue, QueueStats
from .queue_rules import Candidate, Load, admit
from .rules import runnable

__all__ = ["MemoryQueues"]


class MemoryQueues:
    """Named queues over InMemoryExecutionLog's dicts (see storage/queue_rules.py)."""

    _flows: dict[str, FlowRecord]
    _order: dict[str, int]
    _queued: dict[str, tuple[str | None, int, str | None, str | None]]
    _queues: dict[str, QueueLimits | None]
    _starts: dict[str, list[float]]

    def _queue_of(self, flow_id: str) -> str | None:
        queued = self._queued.get(flow_id)
        return None if queued is None else queued[0]

    def _admitted_group(self, c: ClaimFlows, now: float, group: list[FlowRecord]) -> list[str]:
        """The flows of a group of suspects this claim may take: each of a named queue if its queue has room."""
        out = [f.flow_id for f in group if self._queue_of(f.flow_id) is None]
        queues = sorted({q for f in group if (q := self._queue_of(f.flow_id)) is not None})
        for queue in queues:
            members = [f for f in group if self._queue_of(f.flow_id) == queue]
            out += self._admitted(queue, c, now, members, len(members))
        return out

    def _admitted(self, queue: str, c: ClaimFlows, now: float, due: list[FlowRecord], want: int) -> list[str]:
        """The due flows of one named queue (runnable, of the claim's types) this claim may take."""
        limits = self._queues.get(queue)
        load = Load(starts=len(self._recent(queue, limits, now)))
        for flow in self._flows.values():
            if flow.status == FlowStatus.RUNNING and self._queue_of(flow.flow_id) == queue:
                load.running += 1
                load.mine += flow.owner == c.worker_id
                key = self._queued[flow.flow_id][2]
                if key is not None:
                    load.keys[key] = load.keys.get(key, 0) + 1
        lapsed = sorted((f for f in due if f.status == FlowStatus.RUNNING), key=lambda f: f.lease_expires or 0.0)
        waiting = sorted((f for f in due if f.status != FlowStatus.RUNNING),
                         key=lambda f: (-self._queued[f.flow_id][1], f.ready_at or 0.0, self._order[f.flow_id]))
        candidates: list[Candidate] = [(f.flow_id, self._queued[f.flow_id][2], f.status == FlowStatus.RUNNING)
                                       for f in lapsed + waiting]
        return admit(limits, load, want, candidates)

    def _recent(self, queue: str, limits: QueueLimits | None, now: float) -> list[float]:
        """The queue's claim times within its rate period (older ones dropped)."""
        starts = self._starts.setdefault(queue, [])
        if limits is not None and limits.rate_limit is not None:
            starts[:] = [at for at in starts if at > now - limits.rate_period]
        return starts

    def _started(self, flow_id: str, now: float) -> None:
        """Count a claim against its queue's rate limit."""
        queue = self._queue_of(flow_id)
        limits = None if queue is None else self._queues.get(queue)
        if queue is not None and limits is not None and limits.rate_limit is not None:
            self._starts.setdefault(queue, []).append(now)

    def _DeclareQueue(self, c: DeclareQueue, now: float) -> bool:
        if not c.replace and self._queues.get(c.limits.name) is not None:
            return False
        self._queues[c.limits.name] = c.limits
        return True

    def _QueueStats(self, c: QueueStats, now: float) -> list[QueueState]:
        out = []
        for name in sorted(self._queues)[:max(c.limit, 0)]:
            flows = [self._flows[i] for i, q in self._queued.items() if q[0] == name]
            limits = self._queues[name]
            out.append(QueueState(name, limits, sum(1 for f in flows if runnable(f, now)),
                                  sum(1 for f in flows if f.status == FlowStatus.RUNNING),
                                  sum(1 for f in flows if f.status in (FlowStatus.PENDING, FlowStatus.SUSPENDED)
                                      and not runnable(f, now)),
                                  len(self._recent(name, limits, now)) if limits and limits.rate_limit else 0))
        return out

