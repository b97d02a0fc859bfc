"""Child flows: `await self.invoke(child).result()` runs `child` as its own flow and waits for it.

The child's flow_id is derived from the parent's and the call's position, so however often the
parent is replayed or restarted, the same child is started once. The parent waits suspended.
"""

from __future__ import annotations

from typing import Any

from .. import codec
from ..core import StepRecord, StepStatus
from ..errors import ChildFlowError
from ..storage.commands import ScheduleFlow
from .context import Suspend, require
from .definition import definition_of, encode_args

__all__ = ["PendingChild"]


class PendingChild:
    """A child flow invoked at a fixed position of its parent; `await .result()` for its result."""

    def __init__(self, child: object) -> None:
        self.ctx = require("invoke()")
        self.definition = definition_of(type(child))
        self.args = encode_args(child)
        self.position = self.ctx.next_position()
        self.flow_id = f"{self.ctx.flow_id}/{self.position}"

    async def result(self) -> Any:
        """The child's result; ChildFlowError if it failed or was cancelled."""
        ctx = self.ctx
        step_name = f"child:{self.definition.name}"
        digest = codec.args_hash((self.args,), {})
        recorded = ctx.replayed(self.position, step_name, digest)
        if recorded is None or (recorded.status == StepStatus.FAILED and recorded.attempt != ctx.attempt):
            template = StepRecord(self.position, step_name, digest, attempt=ctx.attempt)
            child = ScheduleFlow(self.flow_id, self.definition.name, self.args, parent_id=ctx.flow_id)
            recorded = await ctx.write(ctx.store.invoke_child(ctx.flow_id, ctx.epoch, template, child))
            if recorded is None:
                raise Suspend(None, f"child {self.flow_id}", recorded=True, signal=f"child:{self.flow_id}")
        if recorded.status == StepStatus.COMPLETE:
            return recorded.value
        error = recorded.error
        assert error is not None  # a FAILED step carries its error
        status = "CANCELLED" if error.is_cancellation else "FAILED"
        raise ChildFlowError(self.flow_id, status, error.type_name, error.message)
