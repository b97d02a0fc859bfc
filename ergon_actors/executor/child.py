"""Child flows: `await self.invoke(child).result()` runs `child` as its own flow and waits for it.

The child's flow_id is derived from the parent's and the call's position, so however often the
parent is replayed or restarted, the same child is started once. The parent waits suspended.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from .. import codec
from ..core import Failure, StepRecord, StepStatus
from ..errors import ChildFlowError
from ..storage.commands import ScheduleFlow
from .context import FlowContext, Suspend, current, position_label
from .definition import QueuePlacement, definition_of, encode_args, placement

__all__ = ["PendingChild"]

R = TypeVar("R")


class PendingChild(Generic[R]):
    """A child flow to start and wait for: `await self.invoke(child).result()`.

    `child_bytes` are the child's encoded arguments and `child_type` its flow type name
    (PyErgon's form, `PendingChild(child_bytes, child_type)`, builds one from those). The
    position in the parent is taken by `invoke()`, or by `result()` for one built directly.
    """

    def __init__(self, child_bytes: bytes, child_type: str) -> None:
        self.child_bytes = child_bytes
        self.child_type = child_type
        self.placement = QueuePlacement(None, 0, None)  # its class's queue, for a child built by of()
        self._at: tuple[FlowContext, int] | None = None

    @classmethod
    def of(cls, child: object) -> PendingChild[Any]:
        """The child flow instance `child`, at the parent's next position (`invoke()` calls this)."""
        ctx = current()
        if ctx is None:
            raise RuntimeError("invoke() called outside execution context: it must run inside a flow")
        pending: PendingChild[Any] = cls(encode_args(child), definition_of(type(child)).name)
        pending.placement = placement(child)
        pending._at = (ctx, ctx.next_position())
        return pending

    @property
    def flow_id(self) -> str | None:
        """The child's flow_id once its position in the parent is known."""
        return None if self._at is None else f"{self._at[0].flow_id}/{position_label(self._at[1])}"

    def __repr__(self) -> str:
        return f"PendingChild(child_type={self.child_type!r}, flow_id={self.flow_id!r})"

    async def result(self) -> R:
        """The child's result; ChildFlowError if it failed or was cancelled.

        Raises:
            RuntimeError: called outside a running flow.
        """
        if self._at is None:
            ctx = current()
            if ctx is None:
                raise RuntimeError("result() called outside execution context: it must run inside a flow")
            self._at = (ctx, ctx.next_position())
        ctx, position = self._at
        flow_id = f"{ctx.flow_id}/{position_label(position)}"
        step_name = f"child:{self.child_type}"
        digest = codec.args_hash((self.child_bytes,), {})
        recorded = ctx.replayed(position, step_name, digest)
        if recorded is None or (recorded.status == StepStatus.FAILED and recorded.attempt != ctx.attempt):
            template = StepRecord(position, step_name, digest, attempt=ctx.attempt)
            where = self.placement
            child = ScheduleFlow(flow_id, self.child_type, self.child_bytes, ctx.version, parent_id=ctx.flow_id,
                                 queue=where.name, priority=where.priority, key=where.key)
            recorded = await ctx.write(ctx.store.invoke_child(ctx.flow_id, ctx.epoch, template, child, ctx.deadline))
            if recorded is None:
                raise Suspend(None, f"child {flow_id}", recorded=True, signal=f"child:{flow_id}")
        ctx.passed(position)
        if recorded.status == StepStatus.COMPLETE:
            return cast(R, recorded.value)
        error = recorded.error or Failure.cancelled(flow_id)
        status = "CANCELLED" if error.is_cancellation else "FAILED"
        raise ChildFlowError(error.type_name, error.message, status == "FAILED" and bool(error.retryable),
                             flow_id=flow_id, status=status)
