"""patched() and deprecate_patch(): change a flow's code while flows started on the old code run on.

`if await patched("change-id"):` takes the new branch in a flow that reaches this point under
the new code, and journals a marker at the flow's next position (like a step) so that it takes
the new branch again on every replay. A flow that had journaled something else here before the
change (it started on the old code) gets False and replays the old branch. Once no flow started
before the change is left, replace the call by `deprecate_patch("change-id")`, which keeps the
markers of the flows that took the new branch replaying, and later remove it.
"""

from __future__ import annotations

from .. import codec
from ..core import StepRecord, StepStatus
from .context import NESTED, PATCH_MARK, FlowContext, current_step, require

__all__ = ["patched", "deprecate_patch"]

_TRUE = codec.encode(True)


def _check(change_id: object) -> str:
    if not isinstance(change_id, str) or not change_id:
        raise ValueError(f"a change id is a non-empty string, got {change_id!r}")
    return change_id


def _journaled_from(ctx: FlowContext, position: int) -> bool:
    """True when the journal holds a call at `position` or after it (nested calls count with their step)."""
    return any((p if p < NESTED else p // NESTED - 1) >= position for p in ctx.steps)


def _take(ctx: FlowContext, position: int) -> None:
    ctx.position = position + 1
    ctx.passed(position)


async def patched(change_id: str) -> bool:
    """Whether this flow runs the code after the change `change_id`.

    True for a flow that reaches this point under this code (the marker is journaled at the
    flow's next position) or that journaled the marker before; False for a flow that journaled
    another call here, or after here, before the change: it started on the old code. In a
    step's body (which always runs the code deployed now) it is True and journals nothing.

    Raises:
        RuntimeError: called outside a running flow.
        ValueError: change_id is not a non-empty string.
    """
    ctx = require("patched()")
    name = PATCH_MARK + _check(change_id)
    if current_step() is not None:
        return True
    position = ctx.position
    recorded = ctx.steps.get(position)
    if recorded is not None and recorded.name == name:
        _take(ctx, position)
        return True
    if _journaled_from(ctx, position):
        return False
    ctx.position = position + 1
    await ctx.record(StepRecord(position, name, 0, StepStatus.COMPLETE, _TRUE, None, ctx.attempt))
    ctx.passed(position)
    return True


def deprecate_patch(change_id: str) -> None:
    """Mark where `patched(change_id)` was, once every flow that took the old branch has ended.

    A flow that journaled the change's marker here replays past it; any other flow journals
    nothing. Remove the call once no flow that journaled the marker is left.

    Raises:
        RuntimeError: called outside a running flow.
        ValueError: change_id is not a non-empty string.
    """
    ctx = require("deprecate_patch()")
    name = PATCH_MARK + _check(change_id)
    if current_step() is not None:
        return
    recorded = ctx.steps.get(ctx.position)
    if recorded is not None and recorded.name == name:
        _take(ctx, ctx.position)
