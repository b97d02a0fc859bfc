"""Run one claimed flow to its next resting point: complete, failed, suspended or retrying."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .. import codec
from ..config import DEFAULT_STEP_TIMEOUT
from ..core import Failure, FlowRecord, FlowStatus
from ..errors import (FencedError, FlowCancelledError, FlowTimeoutError, MessageTooLargeError,
                      SerializationError)
from ..storage.base import LogBase
from ..storage.commands import Claim
from ..storage.pyergon import remember_entry
from .context import FlowContext, Halted, Suspend, enter, leave
from .definition import FlowDefinition, build_flow, instance_args, instance_definition
from .observe import FlowWatch, Observer
from .outcome import Completed, Outcome, Suspended, SuspendReason
from .pyergon_handlers import (check_should_retry, handle_flow_completion, handle_flow_error,
                               handle_suspended_flow)  # PyErgon's helpers, at its module path

__all__ = ["Executor", "Outcome", "run_claim", "check_should_retry", "handle_flow_completion",
           "handle_flow_error", "handle_suspended_flow"]

log = logging.getLogger(__name__)


async def run_claim(store: LogBase, claim: Claim, definition: FlowDefinition,
                    instance: object | None = None,
                    entry: Callable[[Any], Awaitable[Any]] | None = None,
                    halt: asyncio.Event | None = None, *, step_timeout: float,
                    observer: Observer | None = None) -> Outcome:
    """Replay and continue a claimed flow, then journal where it ended.

    `step_timeout` bounds each try of a step that sets no timeout of its own (inf: no bound).
    `observer`, if given, is told of the run and of each step body it runs.

    Raises:
        FencedError: the lease moved to another worker; nothing more was written.
        Halted: `halt` was set and the flow stopped before its next step; nothing was written.
    """
    if observer is None:
        return await _run_claim(store, claim, definition, instance, entry, halt, step_timeout, None)
    watch = observer.flow(claim.flow)
    ended = "error"
    try:
        outcome = await _run_claim(store, claim, definition, instance, entry, halt, step_timeout, watch)
        ended = FlowStatus(outcome.status).value
        return outcome
    except Halted:
        ended = "halted"
        raise
    except FencedError:
        ended = "fenced"
        raise
    finally:
        watch.end(ended)


async def _run_claim(store: LogBase, claim: Claim, definition: FlowDefinition, instance: object | None,
                     entry: Callable[[Any], Awaitable[Any]] | None, halt: asyncio.Event | None,
                     step_timeout: float, watch: FlowWatch | None) -> Outcome:
    flow = claim.flow
    ctx = FlowContext(flow.flow_id, flow.flow_type, flow.epoch, flow.attempt, store,
                      {s.position: s for s in claim.steps}, step_timeout, halt, watch, flow.version)
    deadline = None if definition.timeout is None else flow.created_at + definition.timeout
    ctx.deadline = deadline
    token = enter(ctx)
    try:
        try:
            if flow.cancel_requested:
                raise FlowCancelledError(flow.flow_id)
            if instance is None:
                instance = build_flow(definition, flow.args)
            call = entry(instance) if entry is not None else definition.entry_call(instance)
            value = await _within(call, deadline, flow.flow_id, definition.timeout)
            if ctx.refused is not None:
                raise ctx.refused
            data = _encode_result(flow, value)
        except Suspend as pause:
            if ctx.refused is not None:
                raise ctx.refused from None
            if not pause.recorded:
                ready_at = pause.ready_at if deadline is None else min(pause.ready_at or deadline, deadline)
                await ctx.write(store.suspend_flow(flow.flow_id, flow.epoch, ready_at, waiting_on=pause.waiting_on))
            return Suspended(SuspendReason(flow.flow_id, pause.step, pause.signal))
        except FencedError:
            raise
        except Exception as exc:
            if isinstance(ctx.refused, FencedError):
                raise ctx.refused from exc
            if isinstance(exc, FlowCancelledError) or ctx.refused is not None:
                return await _cancelled(store, flow)
            return await _failed(store, flow, definition, exc)
        try:
            await store.finish_flow(flow.flow_id, flow.epoch, FlowStatus.COMPLETE, result=data)
        except MessageTooLargeError as exc:  # a result the journal can never take: fail, not loop
            return await _failed(store, flow, definition, exc)
        return Completed(value, flow_id=flow.flow_id)
    except FlowCancelledError:  # a cancel that arrived while the flow was suspending or failing
        return await _cancelled(store, flow)
    finally:
        leave(token)


async def _within(call: Awaitable[Any], deadline: float | None, flow_id: str, timeout: float | None) -> Any:
    """Await the flow's entry, failing it with FlowTimeoutError once its deadline passes."""
    if deadline is None or timeout is None:  # both or neither
        return await call
    remaining = deadline - time.time()
    if remaining <= 0:
        if isinstance(call, Coroutine):
            call.close()  # never started: closed, it is not reported as never awaited
        raise FlowTimeoutError(flow_id, timeout)
    try:
        async with asyncio.timeout(remaining) as scope:
            return await call
    except TimeoutError:
        if scope.expired():
            raise FlowTimeoutError(flow_id, timeout) from None
        raise


async def _cancelled(store: LogBase, flow: FlowRecord) -> Outcome:
    failure = Failure.cancelled(flow.flow_id)
    log.info("flow %s cancelled", flow.flow_id)
    await store.finish_flow(flow.flow_id, flow.epoch, FlowStatus.CANCELLED, error=failure)
    return Completed.of_failure(flow.flow_id, FlowStatus.CANCELLED, failure)


def _encode_result(flow: FlowRecord, value: Any) -> bytes:
    try:
        return codec.encode(value)
    except SerializationError as exc:
        raise SerializationError(
            f"flow {flow.flow_type} {flow.flow_id!r} returned a value ergon_actors cannot store: {exc}",
            type_name=exc.type_name, flow_id=flow.flow_id) from None


async def _failed(store: LogBase, flow: FlowRecord, definition: FlowDefinition, exc: Exception) -> Outcome:
    failure = Failure.from_exception(exc)
    policy = definition.retry_policy
    if policy is not None and policy.should_retry(flow.attempt, exc):
        delay = policy.delay_for(flow.attempt)
        log.info("flow %s attempt %d failed (%s); retrying in %.3gs", flow.flow_id, flow.attempt,
                 failure.type_name, delay)
        await store.suspend_flow(flow.flow_id, flow.epoch, time.time() + delay,
                                 attempt=flow.attempt + 1, error=failure)
        return Suspended(SuspendReason(flow.flow_id, 0), error=failure)
    log.warning("flow %s (%s) failed: %s: %s", flow.flow_id, flow.flow_type, failure.type_name, failure.message)
    await store.finish_flow(flow.flow_id, flow.epoch, FlowStatus.FAILED, error=failure)
    return Completed.of_failure(flow.flow_id, FlowStatus.FAILED, failure)


class Executor:
    """Runs one flow in this process, durably: `await Executor(flow, store, flow_id).run(lambda f: f.run())`.

    The flow is created in the store if new (flow_id is its idempotency key) and taken over if
    another run of it was interrupted; completed steps replay from the journal. A try of a step
    that sets no timeout of its own fails with StepTimeoutError after `step_timeout` seconds
    (the step_timeout setting's default; inf: no bound).
    """

    def __init__(self, flow: object, storage: LogBase, flow_id: str | None = None, *,
                 lease_seconds: float = 60.0, step_timeout: float = DEFAULT_STEP_TIMEOUT) -> None:
        self.definition = instance_definition(flow)
        remember_entry(self.definition.name, self.definition.entry)
        self.flow = flow
        self.storage = storage
        self.flow_id = flow_id or str(uuid.uuid4())
        self.lease_seconds = lease_seconds
        self.step_timeout = step_timeout
        self.worker_id = f"executor-{uuid.uuid4().hex[:12]}"

    async def run(self, entry: Callable[[Any], Awaitable[Any]] | None = None) -> Outcome:
        """Run (or resume) the flow until it completes, fails or suspends.

        Args:
            entry: called with the flow instance; defaults to its @flow method.

        Raises:
            FlowDefinitionError: no entry given and the class has several @flow methods.
        """
        if entry is None:
            self.definition.entry_name()
        await self.storage.schedule_flow(self.flow_id, self.definition.name, instance_args(self.flow))
        claims = await self.storage.claim(self.worker_id, 1, self.lease_seconds,
                                          flow_id=self.flow_id, steal=True)
        if not claims:  # already finished: the journal has the answer
            record = await self.storage.get_flow(self.flow_id)
            assert record is not None  # scheduled above
            return Outcome.of(record)
        return await run_claim(self.storage, claims[0], self.definition, self.flow, entry,
                               step_timeout=self.step_timeout)

    async def execute(self, entry: Callable[[Any], Awaitable[Any]] | None = None) -> Outcome:
        """PyErgon's name for `run`."""
        return await self.run(entry)

    def __repr__(self) -> str:
        return f"Executor(flow_id={self.flow_id!r}, flow_type={self.definition.name!r})"
