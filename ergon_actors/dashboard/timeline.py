"""A flow's timeline from its event history: which worker held it when, its steps as bars on
that worker's lane, its waits (queue, timer, signal, child, retry) and crashes as marks."""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import FlowDetails

__all__ = ["Bar", "Mark", "Timeline", "timeline", "WAITS", "OPERATOR"]

WAITS = "waits"
OPERATOR = "operator"
_ENDS = ("completed", "failed", "cancelled")
_WAIT_CLOSED_BY = {"timer_fired": "timer", "signal_received": "signal", "child_finished": "child"}


@dataclass(frozen=True, slots=True)
class Bar:
    """A span on a lane. kind: held (a worker held the flow), step-completed, step-failed, or a
    wait: queued, timer, signal, child, retry, suspended. `open`: it had not ended when drawn."""

    lane: str
    start: float
    end: float
    kind: str
    label: str
    open: bool = False


@dataclass(frozen=True, slots=True)
class Mark:
    """A moment on a lane. kind: crashed, fenced, lease_expired, quarantined, an end (completed,
    failed, cancelled) or an operator's act (cancel_requested, retried, forked)."""

    lane: str
    at: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    start: float
    end: float
    lanes: tuple[str, ...]
    bars: tuple[Bar, ...]
    marks: tuple[Mark, ...]


class _Builder:
    def __init__(self, start: float) -> None:
        self.lanes: list[str] = [WAITS]
        self.bars: list[Bar] = []
        self.marks: list[Mark] = []
        self.holder: str | None = None
        self.held_since = start
        self.boundary = start  # where the next step began: the claim or the previous step's end
        self.waits: dict[str, tuple[float, str, str]] = {"queued": (start, "queued", "queued")}

    def lane(self, name: str) -> str:
        if name not in self.lanes:
            self.lanes.append(name)
        return name

    def release(self, at: float) -> None:
        if self.holder is not None:
            self.bars.append(Bar(self.holder, self.held_since, at, "held", f"held by {self.holder}"))
            self.holder = None

    def open_wait(self, key: str, at: float, kind: str, label: str) -> None:
        self.waits[key] = (at, kind, label)

    def close_wait(self, key: str, at: float) -> None:
        if key in self.waits:
            start, kind, label = self.waits.pop(key)
            self.bars.append(Bar(WAITS, start, at, kind, label))

    def close_waits(self, kinds: tuple[str, ...], at: float) -> None:
        for key in [k for k, (_, kind, _) in self.waits.items() if kind in kinds]:
            self.close_wait(key, at)


def timeline(details: FlowDetails, now: float) -> Timeline:
    """The timeline of the flow up to its end, or up to `now` while it runs or waits."""
    flow = details.flow
    start = flow.created_at
    end = max(details.ended_at if details.ended_at is not None else now, start + 0.001)
    b = _Builder(start)
    for event in details.history:
        at, kind, data = event.at, event.kind, event.details
        if kind == "claimed":
            b.release(at)
            b.close_waits(("queued", "suspended", "retry", "timer"), at)
            b.holder = b.lane(str(data.get("worker")))
            b.held_since = b.boundary = at
        elif kind in ("step_completed", "step_failed"):
            label = (f"step {data.get('position')} {data.get('name')} (attempt {data.get('attempt')}, "
                     f"try {data.get('tries')})" + (f": {data.get('error')}" if data.get("error") else ""))
            lane = b.holder or b.lane("steps")
            b.bars.append(Bar(lane, b.boundary, at, kind.replace("_", "-"), label))
            b.boundary = at
        elif kind == "timer_set":
            b.release(at)
            b.open_wait(f"timer:{data.get('name')}", at, "timer", f"timer {data.get('name')}")
        elif kind == "signal_waiting":
            b.release(at)
            b.open_wait(f"signal:{data.get('name')}", at, "signal", f"signal {data.get('name')}")
        elif kind == "child_started":
            b.open_wait(f"child:{data.get('child')}", at, "child", f"child flow {data.get('child')}")
        elif kind in _WAIT_CLOSED_BY:
            b.close_wait(f"{_WAIT_CLOSED_BY[kind]}:{data.get('name', data.get('child'))}", at)
            b.boundary = at
        elif kind == "suspended":
            b.release(at)
            b.open_wait("suspended", at, "suspended", "suspended")
        elif kind == "retry_scheduled":
            what = f"step {data['step']}" if data.get("step") else f"attempt {data.get('attempt')}"
            b.release(at)
            b.open_wait("retry", at, "retry", f"retry of {what}")
        elif kind in ("released", "lease_expired"):
            if kind == "lease_expired":
                b.marks.append(Mark(b.lane(str(data.get("worker"))), at, kind, f"lease of {data.get('worker')} lapsed"))
            b.release(at)
            b.open_wait("queued", at, "queued", "queued again")
        elif kind == "crashed":
            worker = b.lane(str(data.get("worker")))
            b.marks.append(Mark(worker, at, kind, f"worker {data.get('worker')} died ({data.get('cause')}) in step "
                                f"{data.get('position')}" + (", blamed" if data.get("alone") else "")))
            b.release(at)
            b.open_wait("queued", at, "queued", "queued after a crash")
        elif kind == "fenced":
            b.marks.append(Mark(b.holder or WAITS, at, kind, f"write refused: {data.get('reason')}"))
        elif kind == "quarantined":
            b.marks.append(Mark(WAITS, at, kind, f"quarantined after {data.get('crashes')} crashes"))
        elif kind in _ENDS:
            b.release(at)
            b.close_waits(("queued", "suspended", "retry", "timer", "signal", "child"), at)
            b.marks.append(Mark(WAITS, at, kind, kind))
        elif kind in ("cancel_requested", "retried", "forked"):
            b.marks.append(Mark(b.lane(OPERATOR), at, kind, kind.replace("_", " ")))
            if kind == "retried":
                b.open_wait("queued", at, "queued", "queued for a retry")
    b.release(end)
    for key in list(b.waits):
        started, kind, label = b.waits.pop(key)
        b.bars.append(Bar(WAITS, started, end, kind, label, open=True))
    return Timeline(start, end, tuple(b.lanes), tuple(b.bars), tuple(b.marks))

