"""DAG: steps with declared dependencies run in parallel where they are independent.

    registry = DeferredRegistry()
    user = registry.register("fetch_user", [], lambda inputs: self.fetch_user())
    stock = registry.register("check_stock", [], lambda inputs: self.check_stock())
    order = registry.register("validate", ["fetch_user", "check_stock"],
                              lambda inputs: self.validate(inputs["fetch_user"], inputs["check_stock"]))
    await registry.execute()
    result = await order.resolve()

Each node calls one @step. Inside a flow, positions are reserved in registration order when the
DAG starts, so the journal does not depend on which branch finishes first; after a crash only
the unfinished nodes run. Outside a flow the nodes run as plain code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import DagExecutionError
from .context import current, forced_position, release_position

__all__ = ["DeferredRegistry", "DeferredStep", "StepHandle", "DagSummary", "execute_dag"]

T = TypeVar("T")
Factory = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass
class DeferredStep:
    """One DAG node: its name, the nodes it waits for, the factory that calls its step with
    their results by name, and the future its result lands in."""

    step_id: str
    dependencies: list[str]
    factory: Factory
    result_future: asyncio.Future[Any] | None = None


@dataclass(frozen=True)
class DagSummary:
    """The shape of a DAG: its nodes, roots (no dependencies), leaves (nothing depends on them)
    and its depth (the longest chain of dependencies)."""

    total_steps: int
    root_count: int
    leaf_count: int
    max_depth: int
    roots: list[str]
    leaves: list[str]


class StepHandle(Generic[T]):
    """The result of one DAG node, available once the DAG ran; `resolve()` it once."""

    def __init__(self, node: DeferredStep) -> None:
        self.step_id = node.step_id
        self.dependencies = node.dependencies
        self._node = node
        self._resolved = False

    async def resolve(self) -> T:
        """The node's result; its error if it failed.

        Raises:
            RuntimeError: the DAG has not run this node, or the handle was resolved before.
        """
        future = self._node.result_future
        if future is None or not future.done():
            raise RuntimeError(f"DAG node {self.step_id!r} has not run: await registry.execute() first")
        if self._resolved:
            raise RuntimeError(f"StepHandle.resolve() called twice for node {self.step_id!r}: "
                               "keep the result in a variable")
        self._resolved = True
        result: T = future.result()
        return result


class DeferredRegistry:
    """Collects DAG nodes, checks the graph, then runs it with as much parallelism as it allows."""

    def __init__(self) -> None:
        self.steps: list[DeferredStep] = []

    def register(self, name: str, dependencies: list[str], factory: Factory) -> StepHandle[Any]:
        """Add a node; `factory(inputs)` gets its dependencies' results by name and calls one step."""
        if any(node.step_id == name for node in self.steps):
            raise ValueError(f"DAG node {name!r} registered twice")
        node = DeferredStep(name, list(dependencies), factory)
        self.steps.append(node)
        return StepHandle(node)

    def validate(self) -> None:
        """Raise ValueError for a dependency on an unknown node or a cycle."""
        depths(self.steps)

    async def execute(self) -> None:
        """Run every node once its dependencies are done.

        Raises:
            ValueError: the graph has a cycle or a dependency on an unknown node.
            DagExecutionError: a node failed (its error is the cause); nodes already running
                settled first, nodes not started yet never start.
        """
        await execute_dag(self.steps)

    def summary(self) -> DagSummary:
        """Roots, leaves and depth of the graph (ValueError if it is not a DAG)."""
        depth = depths(self.steps)
        needed = {dep for node in self.steps for dep in node.dependencies}
        roots = [node.step_id for node in self.steps if not node.dependencies]
        leaves = [node.step_id for node in self.steps if node.step_id not in needed]
        return DagSummary(len(self.steps), len(roots), len(leaves), max(depth.values(), default=0),
                          roots, leaves)

    def level_graph(self) -> str:
        """The nodes level by level: a level's nodes run in parallel once the level above is done."""
        levels: dict[int, list[str]] = {}
        for name, level in depths(self.steps).items():
            levels.setdefault(level, []).append(name)
        lines = [f"DAG of {len(self.steps)} steps, by level:"]
        for level in sorted(levels):
            names = levels[level]
            together = f" ({len(names)} run in parallel)" if len(names) > 1 else ""
            lines.append(f"Level {level}: {' '.join(f'[{n}]' for n in names)}{together}")
        lines.append("Steps of one level run in parallel.")
        return "\n".join(lines) + "\n"


def depths(nodes: list[DeferredStep]) -> dict[str, int]:
    """Each node's level (0: no dependencies, else 1 + its deepest dependency's), in node order.

    Raises:
        ValueError: a dependency on an unknown node, or a cycle.
    """
    known = {node.step_id: node for node in nodes}
    for node in nodes:
        for dep in node.dependencies:
            if dep not in known:
                raise ValueError(f"Step {node.step_id!r} depends on non-existent step {dep!r}")
    level: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> int:
        if name in path:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise ValueError(f"Cycle detected in the DAG: the dependency cycle {cycle}")
        if name not in level:
            path.append(name)
            level[name] = 1 + max((visit(dep) for dep in known[name].dependencies), default=-1)
            path.pop()
        return level[name]

    for node in nodes:
        visit(node.step_id)
    return {node.step_id: level[node.step_id] for node in nodes}


async def execute_dag(nodes: list[DeferredStep]) -> None:
    """Run `nodes` (see DeferredRegistry.execute); each result is set on its node's future."""
    depths(nodes)
    ctx = current()
    positions: dict[str, int] = {}
    if ctx is not None:  # reserve one position per node, in registration order
        positions = {node.step_id: ctx.position + i for i, node in enumerate(nodes)}
        ctx.position += len(nodes)
    loop = asyncio.get_running_loop()
    for node in nodes:
        if node.result_future is None or node.result_future.done():
            node.result_future = loop.create_future()
    results: dict[str, Any] = {}
    running: dict[asyncio.Future[Any], DeferredStep] = {}
    pending = list(nodes)
    failed: tuple[DeferredStep, BaseException] | None = None
    try:
        while pending or running:
            ready = [] if failed is not None else [n for n in pending if all(d in results for d in n.dependencies)]
            for node in ready:
                pending.remove(node)
                token = forced_position(positions[node.step_id]) if ctx is not None else None
                try:  # the task copies the context: its step takes the reserved position
                    running[asyncio.ensure_future(_run(node, results))] = node
                finally:
                    if token is not None:
                        release_position(token)
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node = running.pop(task)
                error = task.exception()
                if error is None:
                    results[node.step_id] = task.result()
                    node.result_future.set_result(results[node.step_id])  # type: ignore[union-attr]
                elif failed is None:
                    failed = (node, error)
    finally:
        for task in running:  # left behind when the flow stops here (cancelled, fenced): its end is seen
            task.add_done_callback(_seen)
    if failed is not None:
        node, error = failed
        if not isinstance(error, Exception):  # a suspend or halt unwinds the flow as it is
            raise error
        node.result_future.set_exception(error)  # type: ignore[union-attr]
        node.result_future.exception()  # type: ignore[union-attr]  # raised below: mark it seen
        check = getattr(error, "is_retryable", None)
        raise DagExecutionError(f"DAG execution failed: step {node.step_id!r}: {error}", node=node.step_id,
                                retryable=bool(check()) if callable(check) else True) from error


def _seen(task: asyncio.Future[Any]) -> None:
    """Mark a step task's outcome as seen (a flow that stopped no longer wants it)."""
    if not task.cancelled():
        task.exception()


async def _run(node: DeferredStep, results: dict[str, Any]) -> Any:
    return await node.factory({dep: results[dep] for dep in node.dependencies})
