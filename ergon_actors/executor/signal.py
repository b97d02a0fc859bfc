"""External signals: a flow waits, suspended in the store, until a signal of that name arrives.

A signal sent before the flow waits is kept; each signal is delivered to one wait only.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Protocol, cast

from .. import codec
from ..core import Failure, StepRecord, StepStatus
from ..errors import SignalTimeoutError
from .context import FlowContext, Suspend, require
from .timer import parse_duration

__all__ = ["await_external_signal", "SignalSource", "InMemorySignalSource"]


async def await_external_signal(name: str, timeout: float | str | timedelta | None = None) -> Any:
    """Wait for the signal `name` and return its payload.

    Raises:
        SignalTimeoutError: `timeout` passed first (journaled: a replay raises it again).
    """
    ctx = require("await_external_signal()")
    seconds = None if timeout is None else parse_duration(timeout)
    deadline = None if seconds is None else await _deadline(ctx, name, seconds)
    position = ctx.next_position()
    step_name = f"signal:{name}"
    digest = codec.args_hash((name,), {})
    recorded = ctx.replayed(position, step_name, digest)
    if recorded is None and deadline is not None and time.time() >= deadline:
        failure = Failure.from_exception(SignalTimeoutError(name, seconds or 0.0))
        recorded = StepRecord(position, step_name, digest, StepStatus.FAILED, None, failure, ctx.attempt)
        await ctx.record(recorded)
    if recorded is None:
        template = StepRecord(position, step_name, digest, attempt=ctx.attempt)
        # The flow is woken at the wait's timeout, or at the flow's own timeout if that comes first.
        wake = deadline if ctx.deadline is None else min(deadline or ctx.deadline, ctx.deadline)
        recorded = await ctx.write(ctx.store.await_signal(ctx.flow_id, ctx.epoch, template, name, wake))
        if recorded is None:
            raise Suspend(deadline, f"signal {name}", recorded=True, signal=name)
    ctx.passed(position)
    if recorded.status == StepStatus.FAILED:
        raise SignalTimeoutError(name, seconds or 0.0)
    return recorded.value


async def _deadline(ctx: FlowContext, name: str, seconds: float) -> float:
    """The wait's deadline, journaled at its own position so a resumed flow keeps it."""
    position = ctx.next_position()
    step_name = f"deadline:{name}"
    digest = codec.args_hash((name,), {})
    recorded = ctx.replayed(position, step_name, digest)
    if recorded is not None:
        deadline = cast(float, recorded.value)
    else:
        deadline = time.time() + seconds
        await ctx.record(StepRecord(position, step_name, digest, StepStatus.COMPLETE, codec.encode(deadline),
                                    attempt=ctx.attempt))
    ctx.passed(position)
    return deadline


class SignalSource(Protocol):
    """Where a Worker with `with_signals` looks for signals that waiting flows need."""

    async def poll_for_signal(self, name: str) -> Any | None: ...

    async def consume_signal(self, name: str) -> None: ...


class InMemorySignalSource:
    """A SignalSource in this process: `await source.send_signal(name, payload)`."""

    def __init__(self) -> None:
        self._signals: dict[str, Any] = {}

    async def send_signal(self, name: str, payload: Any) -> None:
        self._signals[name] = payload

    async def poll_for_signal(self, name: str) -> Any | None:
        return self._signals.get(name)

    async def consume_signal(self, name: str) -> None:
        self._signals.pop(name, None)
