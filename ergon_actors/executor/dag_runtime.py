"""`await dag(self)`: run a flow's @step methods as a DAG, from their `depends_on` and `inputs`.

    @step
    async def fetch(self) -> int: ...

    @step(depends_on="fetch", inputs={"value": "fetch"})
    async def double(self, value: int) -> int: ...

    @flow
    async def run(self) -> int:
        return await dag(self)          # or dag(self, final_step="double")

The steps are the flow's public @step methods, by name; each runs once the steps it depends on
are done (steps named in `inputs` included), independent ones in parallel, journaled as with
DeferredRegistry.
"""

from __future__ import annotations

from typing import Any

from ..errors import DagExecutionError
from .dag import DeferredRegistry, StepHandle, depths

__all__ = ["dag", "DagExecutionError"]


async def dag(flow: object, final_step: str | None = None) -> Any:
    """Run the flow's @step methods as a DAG; the result of `final_step`, by default the last
    step (by name) of the deepest level.

    Raises:
        DagExecutionError: no @step methods, a dependency on something that is not one, a
            cycle, an unknown `final_step`, or a step failed (its error is the cause).
    """
    kind = type(flow).__name__
    names = [n for n in dir(flow) if not n.startswith("_") and getattr(getattr(flow, n), "_is_ergon_step", False)]
    if not names:
        raise DagExecutionError(f"No @step methods found in {kind}", retryable=False)
    registry = DeferredRegistry()
    handles: dict[str, StepHandle[Any]] = {}
    for name in names:
        method = getattr(flow, name)
        for dep in method._step_depends_on:
            if dep not in names:
                raise DagExecutionError(f"Step {name!r} of {kind} depends on {dep!r}, but {dep!r} is not "
                                        "a @step method", retryable=False)
        handles[name] = registry.register(name, method._step_depends_on, _caller(method))
    try:
        level = depths(registry.steps)
    except ValueError as exc:
        raise DagExecutionError(f"{kind}: {exc}", retryable=False) from None
    if final_step is None:
        deepest = max(level.values())
        final_step = [name for name, depth in level.items() if depth == deepest][-1]
    elif final_step not in handles:
        raise DagExecutionError(f"Final step {final_step!r} was not executed: {kind} has no such @step",
                                retryable=False)
    try:
        await registry.execute()
    except DagExecutionError as exc:
        raise DagExecutionError(f"Step execution failed: step {exc.node!r} of {kind}: {exc.__cause__}",
                                node=exc.node, retryable=exc.retryable) from exc.__cause__
    return await handles[final_step].resolve()


def _caller(method: Any) -> Any:
    """The factory of a step node: call the step with its wired inputs as keyword arguments."""
    wiring: dict[str, str] = method._step_inputs
    return lambda results: method(**{param: results[source] for param, source in wiring.items()})

