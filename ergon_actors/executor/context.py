"""The running flow's context and the journaled call path of a step."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, Callable

from .. import codec
from ..core import Failure, StepRecord, StepStatus
from ..errors import FencedError, NondeterminismError, SerializationError
from ..storage.base import LogBase

__all__ = ["FlowContext", "Suspend", "Halted", "current", "call_step"]


class Suspend(BaseException):
    """Unwinds a flow that must wait (timer, signal, child); BaseException so `except Exception`
    in user code cannot swallow it."""

    def __init__(self, ready_at: float | None, reason: str) -> None:
        super().__init__(reason)
        self.ready_at = ready_at
        self.reason = reason


class Halted(BaseException):
    """Unwinds a flow at a step boundary because its worker is draining; nothing is written."""


class FlowContext:
    """One run of one flow: its lease epoch, its journal so far and the next step position."""

    __slots__ = ("flow_id", "flow_type", "epoch", "attempt", "store", "steps", "position", "fenced",
                 "halt")

    def __init__(self, flow_id: str, flow_type: str, epoch: int, attempt: int, store: LogBase,
                 steps: dict[int, StepRecord], halt: asyncio.Event | None = None) -> None:
        self.flow_id = flow_id
        self.flow_type = flow_type
        self.epoch = epoch
        self.attempt = attempt
        self.store = store
        self.steps = steps
        self.position = 0
        self.fenced: FencedError | None = None
        self.halt = halt

    def next_position(self) -> int:
        position = self.position
        self.position += 1
        return position

    async def record(self, step: StepRecord) -> None:
        try:
            await self.store.append_step(self.flow_id, self.epoch, step)
        except FencedError as exc:
            self.fenced = exc  # remembered: user code may catch it, the flow still stops
            raise


_current: ContextVar[FlowContext | None] = ContextVar("ergon_flow", default=None)
_in_step: ContextVar[bool] = ContextVar("ergon_in_step", default=False)


def current() -> FlowContext | None:
    """The context of the flow running in this task, or None outside a flow."""
    return _current.get()


def call_step(name: str, fn: Callable, obj: Any, args: tuple, kwargs: dict):
    """Called by a @step method: takes the next position now (call order decides it), returns
    the awaitable that replays or runs the step."""
    ctx = _current.get()
    if ctx is None or _in_step.get():
        return fn(obj, *args, **kwargs)
    return _run_step(ctx, ctx.next_position(), name, fn, obj, args, kwargs)


async def _run_step(ctx: FlowContext, position: int, name: str, fn: Callable, obj: Any,
                    args: tuple, kwargs: dict) -> Any:
    digest = codec.args_hash(args, kwargs)
    recorded = ctx.steps.get(position)
    if recorded is not None:
        if recorded.name != name or recorded.args_hash != digest:
            raise NondeterminismError(ctx.flow_id, position,
                                      f"{recorded.name}(args #{recorded.args_hash:x})",
                                      f"{name}(args #{digest:x})")
        if recorded.status == StepStatus.COMPLETE:
            return codec.decode(recorded.result)
        if recorded.attempt == ctx.attempt:  # failed in this attempt: fail the same way again
            raise recorded.error.to_exception()
    if ctx.halt is not None and ctx.halt.is_set():
        raise Halted()
    token = _in_step.set(True)
    try:
        value = await fn(obj, *args, **kwargs)
    except Exception as exc:
        await ctx.record(StepRecord(position, name, digest, StepStatus.FAILED, None,
                                    Failure.from_exception(exc), ctx.attempt))
        raise
    finally:
        _in_step.reset(token)
    try:
        data = codec.encode(value)
    except SerializationError as exc:
        raise SerializationError(
            f"step {name!r} of flow {ctx.flow_type} {ctx.flow_id!r} returned a value ergon_actors "
            f"cannot store: {exc}", type_name=exc.type_name, flow_id=ctx.flow_id, step=name) from None
    await ctx.record(StepRecord(position, name, digest, StepStatus.COMPLETE, data, None, ctx.attempt))
    return value


def enter(ctx: FlowContext):
    """Make ctx the current flow for this task; returns the token for `leave`."""
    return _current.set(ctx)


def leave(token) -> None:
    _current.reset(token)
