"""What every store does when a worker dies: the crash each of its flows records, the blame and
the quarantine (the Redis store's Lua script follows the same rules)."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from ..core import Crash, Failure, FlowRecord, FlowStatus, StepStatus
from ..errors import PoisonFlowError
from .commands import RecordCrash

__all__ = ["CAUSES", "JITTER", "SPLIT", "check", "in_flight", "group", "crashed", "poison_failure", "how"]

CAUSES = ("exit", "signal", "hang", "memory")
JITTER = 0.05  # seconds: a suspect is due again after a random delay of up to this
SPLIT = 4      # a crash beside other flows cuts each one's group to this fraction of them


def check(c: RecordCrash) -> None:
    """Raise ValueError for a RecordCrash no store can apply (its content, not the store)."""
    if c.cause not in CAUSES:
        raise ValueError(f"cause must be one of {', '.join(CAUSES)}, got {c.cause!r}")
    if c.max_crashes < 1:
        raise ValueError(f"max_crashes must be >= 1, got {c.max_crashes}")


def in_flight(steps: Iterable[tuple[int, str, str]]) -> tuple[int, str | None]:
    """The step a run died in, from its journal's (position, name, status) entries: the first
    position without a COMPLETE entry, and the name of the entry there if there is one."""
    names: dict[int, str] = {}
    done: set[int] = set()
    for position, name, status in steps:
        names[position] = name
        if status == StepStatus.COMPLETE:
            done.add(position)
    position = 0
    while position in done:
        position += 1
    return position, names.get(position)


def group(held: int, before: int) -> int:
    """The group size of a suspect whose worker died holding `held` flows: the most flows it may
    run with (itself included) until its run ends; `before` is its size until then (0: none)."""
    size = max(1, -(-held // SPLIT))
    return min(size, before) if before else size


def crashed(flow: FlowRecord, c: RecordCrash, step: tuple[int, str | None], held: int,
            now: float) -> FlowRecord:
    """The flow after the death of its worker, which held `held` flows: quarantined (FAILED), or
    a suspect PENDING again."""
    crash = Crash(now, c.worker_id, c.cause, c.exit_code, c.signal, step[0], step[1], held == 1)
    flow = replace(flow, crashes=(*flow.crashes, crash), owner=None, lease_expires=None, updated_at=now)
    if flow.blamed >= c.max_crashes:
        return replace(flow, status=FlowStatus.FAILED, error=poison_failure(flow.flow_id, flow.crashes),
                       ready_at=None, suspect=0)
    return replace(flow, status=FlowStatus.PENDING, ready_at=now + random.uniform(0, JITTER),
                   suspect=group(held, flow.suspect))


def poison_failure(flow_id: str, crashes: Iterable[Crash]) -> Failure:
    """The failure of a quarantined flow, naming the steps, exit codes or signals and times of
    the crashes blamed on it."""
    blamed = [crash for crash in crashes if crash.alone]
    last = blamed[-1]
    details = "; ".join(_describe(crash) for crash in blamed)
    return Failure.from_exception(PoisonFlowError(flow_id, last.step, last.position, len(blamed), details))


def how(crash: Crash) -> str:
    """How the worker died: "exit code 1", "signal 11 (SIGSEGV)" or "no exit code"."""
    if crash.exit_code is not None:
        return f"exit code {crash.exit_code}"
    if crash.signal is not None:
        try:
            return f"signal {crash.signal} ({signal.Signals(crash.signal).name})"
        except ValueError:
            return f"signal {crash.signal}"
    return "no exit code"


def _describe(crash: Crash) -> str:
    when = datetime.fromtimestamp(crash.at, UTC).isoformat(timespec="milliseconds")
    where = f"step {crash.position}" + (f" ({crash.step})" if crash.step else "")
    return f"{how(crash)} ({crash.cause}) in {where} at {when.replace('+00:00', 'Z')}"
