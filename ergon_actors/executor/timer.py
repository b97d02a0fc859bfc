"""Durable timers: a flow sleeps in the store, holding no worker, and wakes when due.

`await sleep("10m")` in a flow (or `schedule_timer(seconds)` in a step) journals its due time
at the next position and suspends the flow until then, also across restarts of every process.
Inside a step, the code before the timer runs again when the flow resumes: give the timer its
own step, or call it from the flow.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import cast

from .. import codec
from ..config import parse_duration
from ..core import StepRecord, StepStatus
from ..errors import TimerError
from .context import Suspend, current

__all__ = ["sleep", "schedule_timer", "schedule_timer_named", "parse_duration", "TimerError"]

async def sleep(duration: float | int | str | timedelta | datetime, name: str = "sleep") -> None:
    """Suspend the flow durably for `duration`, or until a datetime (naive means local time)."""
    ctx = current()
    if ctx is None:
        raise TimerError("a durable timer (sleep, schedule_timer) must be set inside a running flow")
    position = ctx.next_position()
    step_name = f"timer:{name}"
    digest = codec.args_hash((name,), {})
    recorded = ctx.replayed(position, step_name, digest)
    if recorded is not None:
        fire_at = cast(float, recorded.value)
    else:
        fire_at = duration.timestamp() if isinstance(duration, datetime) else time.time() + parse_duration(duration)
        await ctx.record(StepRecord(position, step_name, digest, StepStatus.COMPLETE, codec.encode(fire_at),
                                    attempt=ctx.attempt))
    if fire_at > time.time():
        raise Suspend(fire_at, f"timer {name} until {fire_at}", waiting_on=f"timer:{name}")
    ctx.passed(position)


async def schedule_timer(seconds: float) -> None:
    """PyErgon's timer: wait `seconds` durably."""
    await sleep(seconds, "timer")


async def schedule_timer_named(seconds: float, name: str) -> None:
    """PyErgon's named timer: wait `seconds` durably; the name shows in the journal."""
    await sleep(seconds, name)
