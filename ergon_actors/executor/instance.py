"""PyErgon's module path of Executor, and its one-call form `execute_flow`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..storage.base import LogBase
from .execution import Executor
from .outcome import Outcome

__all__ = ["Executor", "execute_flow"]


async def execute_flow(flow: object, storage: LogBase, entry_point: Callable[[Any], Awaitable[Any]] | None = None,
                       flow_id: str | None = None) -> Outcome:
    """`await Executor(flow, storage, flow_id).run(entry_point)`."""
    return await Executor(flow, storage, flow_id).run(entry_point)
