"""DAG: steps with declared dependencies run in parallel where they are independent.

    registry = DeferredRegistry()
    user = registry.register("fetch_user", [], lambda inputs: self.fetch_user())
    stock = registry.register("check_stock", [], lambda inputs: self.check_stock())
    order = registry.register("validate", ["fetch_user", "check_stock"],
                              lambda inputs: self.validate(inputs["fetch_user"], inputs["check_stock"]))
    await registry.execute()
    result = await order.resolve()

Each node calls one @step. Positions are reserved in registration order when the DAG starts,
so the journal does not depend on which branch finishes first; after a crash only the
unfinished nodes run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .context import forced_position, release_position, require

__all__ = ["DeferredRegistry", "StepHandle"]


class StepHandle:
    """The result of one DAG node, available after `DeferredRegistry.execute()`."""

    def __init__(self, name: str, dependencies: list[str]) -> None:
        self.step_id = name
        self.dependencies = dependencies
        self._done = False
        self._value: Any = None

    async def resolve(self) -> Any:
        if not self._done:
            raise RuntimeError(f"DAG node {self.step_id!r} has not run: await registry.execute() first")
        return self._value


class DeferredRegistry:
    """Collects DAG nodes, checks the graph, then runs it with as much parallelism as it allows."""

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[list[str], Callable[[dict[str, Any]], Awaitable[Any]], StepHandle]] = {}

    def register(self, name: str, dependencies: list[str],
                 factory: Callable[[dict[str, Any]], Awaitable[Any]]) -> StepHandle:
        """Add a node; `factory(inputs)` gets its dependencies' results by name and calls one step."""
        if name in self._nodes:
            raise ValueError(f"DAG node {name!r} registered twice")
        handle = StepHandle(name, list(dependencies))
        self._nodes[name] = (list(dependencies), factory, handle)
        return handle

    def validate(self) -> None:
        """Raise ValueError for a dependency on an unknown node or a cycle."""
        for name, (deps, _, _) in self._nodes.items():
            for dep in deps:
                if dep not in self._nodes:
                    raise ValueError(f"DAG node {name!r} depends on unknown node {dep!r}")
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 1:
                raise ValueError(f"DAG has a cycle: {' -> '.join([*path, name])}")
            if state.get(name) == 2:
                return
            state[name] = 1
            for dep in self._nodes[name][0]:
                visit(dep, [*path, name])
            state[name] = 2

        for name in self._nodes:
            visit(name, [])

    async def execute(self) -> None:
        """Run every node once its dependencies are done; raises the first node's error after
        the nodes already running have settled."""
        self.validate()
        ctx = require("DeferredRegistry.execute()")
        base = ctx.position
        ctx.position += len(self._nodes)  # reserve one position per node, in registration order
        positions = {name: base + i for i, name in enumerate(self._nodes)}
        results: dict[str, Any] = {}
        running: dict[asyncio.Task[Any], str] = {}
        pending = dict(self._nodes)
        failure: BaseException | None = None
        while pending or running:
            if failure is None:
                for name in [n for n, (deps, _, _) in pending.items() if all(d in results for d in deps)]:
                    deps, factory, _ = pending.pop(name)
                    token = forced_position(positions[name])
                    try:
                        awaitable = factory({d: results[d] for d in deps})
                    finally:
                        release_position(token)
                    running[asyncio.ensure_future(awaitable)] = name
            else:
                pending.clear()
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = running.pop(task)
                if task.exception() is not None:
                    failure = failure or task.exception()
                else:
                    results[name] = task.result()
                    handle = self._nodes[name][2]
                    handle._value, handle._done = results[name], True
        if failure is not None:
            raise failure
