"""The running flow's context and the journaled call path of a step."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from .. import codec
from ..core import Failure, RetryPolicy, StepRecord, StepStatus
from ..errors import (ErgonError, FencedError, FlowCancelledError, NondeterminismError,
                      SerializationError, StepTimeoutError)
from ..storage.base import LogBase
from .observe import FlowWatch

__all__ = ["FlowContext", "StepOptions", "StepCall", "Suspend", "Halted", "current", "current_step",
           "require", "call_step", "position_label", "NESTED"]

T = TypeVar("T")


class Suspend(BaseException):
    """Unwinds a flow that must wait (timer, signal, child, retry backoff); BaseException so
    `except Exception` in user code cannot swallow it.

    `ready_at` is when the flow may run again (None: when woken). `recorded` means the store
    already suspended the flow (a signal or child wait), so nothing more is written. `signal`
    names what a signal or child wait waits for (None: a timer); `step` is the waiting step in
    PyErgon's numbering (0: the flow's body, n: the step at position n - 1). `waiting_on` names
    what it waits for ("timer:NAME", "retry:STEP") in the store.
    """

    def __init__(self, ready_at: float | None, reason: str, recorded: bool = False,
                 signal: str | None = None, waiting_on: str | None = None) -> None:
        super().__init__(reason)
        self.ready_at = ready_at
        self.reason = reason
        self.recorded = recorded
        self.signal = signal
        self.waiting_on = waiting_on
        inside = _in_step.get()
        self.step = 0 if inside is None else inside.position + 1


class Halted(BaseException):
    """Unwinds a flow at a step boundary because its worker is draining; nothing is written."""


@dataclass(frozen=True, slots=True)
class StepOptions:
    name: str
    retry_policy: RetryPolicy | None = None
    timeout: float | None = None  # None: the step_timeout its worker or executor was given


class StepCall(NamedTuple):
    """The step whose body runs in this task: its position, name and try (1 + failed tries)."""

    position: int
    name: str
    try_number: int


class FlowContext:
    """One run of one flow: its lease epoch, its journal so far and the next step position.

    `step_timeout` bounds each try of a step that sets no timeout of its own (inf: no bound).
    `deadline` is when the flow's @flow(timeout=...) runs out (None: never); a wait the store
    suspends the flow on (a signal, a child flow) wakes it then at the latest. It also keeps
    which positions this run got past (their call returned to the flow's code), so
    that a step can tell which earlier positions may still be in flight beside it (`pending`).
    """

    __slots__ = ("flow_id", "flow_type", "epoch", "attempt", "store", "steps", "position", "refused",
                 "halt", "step_timeout", "watch", "deadline", "version", "_floor", "_past")

    def __init__(self, flow_id: str, flow_type: str, epoch: int, attempt: int, store: LogBase,
                 steps: dict[int, StepRecord], step_timeout: float, halt: asyncio.Event | None = None,
                 watch: FlowWatch | None = None, version: str | None = None) -> None:
        self.flow_id = flow_id
        self.flow_type = flow_type
        self.epoch = epoch
        self.attempt = attempt
        self.store = store
        self.steps = steps
        self.position = 0
        self.refused: ErgonError | None = None  # fenced or cancelled: the flow must stop
        self.halt = halt
        self.step_timeout = step_timeout
        self.watch = watch  # told of each step body run here (metrics, traces), if any
        self.deadline: float | None = None  # the flow's own timeout, as a wall-clock time: a wait ends there too
        self.version = version  # the code version the flow is pinned to; its children get it too
        self._floor = 0              # every position below it was got past
        self._past: set[int] = set()  # positions at or above the floor that were got past

    def passed(self, position: int) -> None:
        """Note that the call at `position` returned to the flow (a result, or a final error).

        A call nested in a step's body is got past with its step: only the flow's own
        positions are kept."""
        if position >= NESTED:
            return
        self._past.add(position)
        while self._floor in self._past:
            self._past.discard(self._floor)
            self._floor += 1

    def pending(self, below: int) -> list[int]:
        """Positions under `below` that were taken but not got past yet (steps run in parallel)."""
        return [p for p in range(self._floor, below) if p not in self._past]

    def passed_above(self, position: int) -> list[int]:
        """Positions above `position` that were got past already (a later call that returned first)."""
        return sorted(p for p in self._past if p > position)

    def next_position(self) -> int:
        """The position of the next journaled call: the flow's next one, or, for a timer, signal
        or child called inside a step's body, the next one nested under that step."""
        forced = _forced.get()
        if forced is not None:  # a DAG node: its position was reserved in declaration order
            _forced.set(None)
            return forced
        frame = _in_step.get()
        if frame is not None:
            frame.nested += 1
            return (frame.position + 1) * NESTED + frame.nested - 1
        position = self.position
        self.position += 1
        return position

    def replayed(self, position: int, name: str, digest: int) -> StepRecord | None:
        """The journal entry at this position, checked against what the code calls now."""
        recorded = self.steps.get(position)
        if recorded is not None and (recorded.name != name or recorded.args_hash != digest):
            marker = recorded.name.startswith(PATCH_MARK)
            raise NondeterminismError(
                self.flow_id, position, f"{recorded.name}(args #{recorded.args_hash:x})", f"{name}(args #{digest:x})",
                patch=recorded.name[len(PATCH_MARK):] if marker else name, missing=marker)
        return recorded

    async def write(self, awaitable: Awaitable[T]) -> T:
        """Await a store write; a refusal is remembered, as user code may catch and ignore it."""
        try:
            return await awaitable
        except (FencedError, FlowCancelledError) as exc:
            self.refused = exc
            raise

    async def record(self, step: StepRecord) -> None:
        await self.write(self.store.append_step(self.flow_id, self.epoch, step))


class _StepFrame:
    """The step whose body runs in this task, its try, and how many nested positions its body took."""

    __slots__ = ("position", "name", "try_number", "nested")

    def __init__(self, position: int, name: str, try_number: int) -> None:
        self.position = position
        self.name = name
        self.try_number = try_number
        self.nested = 0


# The durable calls a step's body makes (a timer, a signal, a child) take positions nested under
# the step: (step position + 1) * NESTED + n. They do not use the flow's counter, so a step
# replayed from its journaled result (its body skipped) leaves the positions after it unchanged,
# and steps running in parallel cannot interleave their calls' positions.
NESTED = 1 << 32
PATCH_MARK = "patch:"  # the step name of a patch marker starts with it (executor/patch.py)

_current: ContextVar[FlowContext | None] = ContextVar("ergon_flow", default=None)
_in_step: ContextVar[_StepFrame | None] = ContextVar("ergon_in_step", default=None)
_forced: ContextVar[int | None] = ContextVar("ergon_forced_position", default=None)


def current() -> FlowContext | None:
    """The context of the flow running in this task, or None outside a flow."""
    return _current.get()


def current_step() -> StepCall | None:
    """The step whose body runs in this task (position, name, try_number), or None outside a step."""
    frame = _in_step.get()
    return None if frame is None else StepCall(frame.position, frame.name, frame.try_number)


def position_label(position: int) -> str:
    """A position as people read it: "5", or "2.1" for the second call nested in step 2."""
    if position < NESTED:
        return str(position)
    return f"{position // NESTED - 1}.{position % NESTED}"


def require(what: str) -> FlowContext:
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(f"{what} must be called inside a running flow")
    return ctx


def call_step(options: StepOptions, fn: Callable[..., Awaitable[Any]], obj: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Awaitable[Any]:
    """Called by a @step method: takes the next position now (call order decides it), returns
    the awaitable that replays or runs the step."""
    ctx = _current.get()
    if ctx is None or _in_step.get() is not None:
        return fn(obj, *args, **kwargs)
    return _run_step(ctx, ctx.next_position(), options, fn, obj, args, kwargs)


async def _run_step(ctx: FlowContext, position: int, options: StepOptions, fn: Callable[..., Awaitable[Any]],
                    obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    name = options.name
    digest = codec.args_hash(args, kwargs)
    recorded = ctx.replayed(position, name, digest)
    tries = 1
    if recorded is not None:
        if recorded.status == StepStatus.COMPLETE:
            ctx.passed(position)
            return recorded.value
        if recorded.attempt == ctx.attempt:
            if recorded.retry_at is None:  # failed for good in this attempt: fail the same way
                assert recorded.error is not None  # a FAILED step carries its error
                ctx.passed(position)
                raise recorded.error.to_exception()
            if recorded.retry_at > time.time():  # woken early: keep the journaled backoff
                raise Suspend(recorded.retry_at, f"step {name} retries at {recorded.retry_at}",
                              waiting_on=f"retry:{name}")
            tries = recorded.tries + 1
    if ctx.halt is not None and ctx.halt.is_set():
        raise Halted()
    token = _in_step.set(_StepFrame(position, name, tries))
    watch = None if ctx.watch is None else ctx.watch.step(position, name, tries)
    try:
        timeout = ctx.step_timeout if options.timeout is None else options.timeout
        value = await _with_timeout(name, timeout, fn(obj, *args, **kwargs))
    except Exception as exc:
        if watch is not None:
            watch.end("failed")
        await _failed(ctx, position, options, digest, tries, exc)
        raise
    except BaseException:
        if watch is not None:
            watch.end("interrupted")
        raise
    finally:
        _in_step.reset(token)
    if watch is not None:
        watch.end("completed")
    try:
        data = codec.encode(value)
    except SerializationError as exc:
        raise SerializationError(
            f"step {name!r} of flow {ctx.flow_type} {ctx.flow_id!r} returned a value ergon_actors "
            f"cannot store: {exc}", type_name=exc.type_name, flow_id=ctx.flow_id, step=name) from None
    await ctx.record(StepRecord(position, name, digest, StepStatus.COMPLETE, data, None, ctx.attempt, tries=tries))
    ctx.passed(position)
    return value


async def _with_timeout(name: str, timeout: float, coro: Awaitable[Any]) -> Any:
    if timeout == math.inf:
        return await coro
    try:
        async with asyncio.timeout(timeout) as scope:
            return await coro
    except TimeoutError:
        if scope.expired():
            raise StepTimeoutError(name, timeout) from None
        raise


async def _failed(ctx: FlowContext, position: int, options: StepOptions, digest: int, tries: int,
                  exc: Exception) -> None:
    """Journal a step failure; with a retry policy that allows another try, suspend until it."""
    if ctx.refused is not None:
        return
    failure = Failure.from_exception(exc)
    policy = options.retry_policy
    retry_at = None
    if policy is not None and policy.should_retry(tries, exc):
        retry_at = time.time() + policy.delay_for(tries)
    await ctx.record(StepRecord(position, options.name, digest, StepStatus.FAILED, None, failure,
                                ctx.attempt, tries=tries, retry_at=retry_at))
    if retry_at is not None:
        raise Suspend(retry_at, f"step {options.name} try {tries} failed; retrying",
                      waiting_on=f"retry:{options.name}") from exc
    ctx.passed(position)


def enter(ctx: FlowContext) -> Token[FlowContext | None]:
    """Make ctx the current flow for this task; returns the token for `leave`."""
    return _current.set(ctx)


def leave(token: Token[FlowContext | None]) -> None:
    _current.reset(token)


def forced_position(position: int) -> Token[int | None]:
    """Make the next journaled call in this context take `position` (used by the DAG runner)."""
    return _forced.set(position)


def release_position(token: Token[int | None]) -> None:
    _forced.reset(token)
