"""PyErgon's worker helpers over its store API: end, retry or park a flow taken with `dequeue_flow`.

For programs that drive flows through PyErgon's store API themselves (`dequeue_flow`, then
`handle_flow_completion` / `handle_flow_error` / `handle_suspended_flow`). ergon_actors' own
Worker does not use them: it journals where each flow ended in one command. A parent waiting
for a child is woken by the store when the child ends, so `complete_child_flow` has nothing
left to do.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ..core import InvocationStatus, RetryPolicy, ScheduledFlow, TaskStatus
from ..storage.base import LogBase
from .outcome import SuspendReason

__all__ = ["check_should_retry", "handle_flow_completion", "handle_flow_error", "handle_suspended_flow",
           "complete_child_flow"]

log = logging.getLogger(__name__)


async def complete_child_flow(storage: LogBase, flow_id: str, parent_metadata: tuple[str, str] | None,
                              success: bool, error_msg: str | None = None) -> None:
    """PyErgon's parent notification. The store wakes a waiting parent when its child ends
    (`complete_flow` ends it), with the child's result or error, so this does nothing."""


async def check_should_retry(storage: LogBase, flow: ScheduledFlow) -> timedelta | None:
    """How long to wait before the flow's next attempt, or None when it must not retry.

    None when one of its invocations failed with a non-retryable error, when it has no
    invocation 0, or when `flow.retry_count + 1` reaches the policy's attempts. The policy is
    invocation 0's; without one, RetryPolicy.STANDARD (as PyErgon does).
    """
    if await storage.has_non_retryable_error(flow.flow_id):
        return None
    entry = await storage.get_invocation(flow.flow_id, 0)
    if entry is None:
        return None
    policy = entry.retry_policy or RetryPolicy.STANDARD
    attempt = flow.retry_count + 1
    if attempt >= policy.max_attempts:
        return None
    return timedelta(seconds=policy.delay_for(attempt))


async def handle_flow_completion(storage: LogBase, worker_id: str, flow_task_id: str, flow_id: str,
                                 parent_metadata: tuple[str, str] | None) -> None:
    """Mark the flow COMPLETE (a failure to do so is logged, not raised)."""
    log.info("worker %s completed flow %s (task %s)", worker_id, flow_id, flow_task_id)
    try:
        await storage.complete_flow(flow_task_id, TaskStatus.COMPLETE)
    except Exception:
        log.exception("worker %s could not mark task %s complete", worker_id, flow_task_id)


async def handle_flow_error(storage: LogBase, worker_id: str, flow: ScheduledFlow, flow_task_id: str,
                            error: Exception, parent_metadata: tuple[str, str] | None) -> None:
    """Retry the flow after the backoff `check_should_retry` gives, or mark it FAILED with the
    error's message; a non-retryable error is recorded on invocation 0 first."""
    message = str(error)
    check = getattr(error, "is_retryable", None)
    if callable(check) and not check():
        await storage.update_is_retryable(flow.flow_id, 0, False)
    delay = await check_should_retry(storage, flow)
    try:
        if delay is not None:
            log.info("worker %s retries flow %s (attempt %d) in %s: %s", worker_id, flow.flow_id,
                     flow.retry_count + 2, delay, message)
            await storage.retry_flow(flow_task_id, message, delay)
        else:
            log.info("worker %s: flow %s failed: %s", worker_id, flow.flow_id, message)
            await storage.complete_flow(flow_task_id, TaskStatus.FAILED, message)
    except Exception:
        log.exception("worker %s could not record the failure of task %s", worker_id, flow_task_id)


async def handle_suspended_flow(storage: LogBase, worker_id: str, flow_task_id: str, flow_id: str,
                                reason: SuspendReason) -> None:
    """Mark the flow SUSPENDED, then resume it at once if the timer or signal it waits for
    already left its result (it arrived while the flow was suspending)."""
    log.info("worker %s: flow %s suspended (%s)", worker_id, flow_id, reason)
    await storage.complete_flow(flow_task_id, TaskStatus.SUSPENDED)
    waiting = (InvocationStatus.WAITING_FOR_SIGNAL, InvocationStatus.WAITING_FOR_TIMER)
    for inv in await storage.get_invocations_for_flow(flow_id):
        if inv.status in waiting and await storage.get_suspension_result(flow_id, inv.step, inv.timer_name or ""):
            await storage.resume_flow(flow_id)
            return
