"""dag(self) over the steps' depends_on/inputs, DeferredRegistry outside a flow, its summary and
level graph, execute_dag, and how a DAG fails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from ergon_actors import (DagExecutionError, DagSummary, DeferredRegistry, Executor, InMemoryExecutionLog,
                          RetryableError, dag, execute_dag, flow, flow_type, step)
from ergon_actors.executor.dag import DeferredStep
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)

RAN: list[str] = []


@dataclass
@flow_type
class Diamond:
    base: int

    @step
    async def root(self) -> int:
        RAN.append("root")
        return self.base

    @step(depends_on="root", inputs={"value": "root"})
    async def left(self, value: int) -> int:
        RAN.append("left")
        return value + 1

    @step(inputs={"value": "root"})  # inputs alone make it depend on root
    async def right(self, value: int) -> int:
        RAN.append("right")
        return value + 2

    @step(depends_on=["left", "right"], inputs={"a": "left", "b": "right"})
    async def merge(self, a: int, b: int) -> int:
        RAN.append("merge")
        return a * b

    @flow
    async def run(self) -> int:
        return await dag(self)


def test_dag_runs_the_steps_by_their_dependencies_and_journals_each_once():
    async def body() -> None:
        RAN.clear()
        store = InMemoryExecutionLog()
        outcome = await Executor(Diamond(10), store, "d1").run()
        assert outcome.result == 11 * 12
        assert RAN[0] == "root" and RAN[-1] == "merge" and sorted(RAN) == ["left", "merge", "right", "root"]
        assert [s.name for s in await store.load_steps("d1")] == ["left", "merge", "right", "root"]  # name order
        RAN.clear()
        assert (await Executor(Diamond(10), store, "d1").run()).result == 132 and RAN == []
        assert await Diamond(1).run() == 6  # outside a flow: plain code
    run(body())


class Broken(RetryableError):
    def is_retryable(self) -> bool:
        return False


@dataclass
@flow_type
class Failing:
    n: int = 0

    @step
    async def fine(self) -> int:
        return 1

    @step(depends_on="fine")
    async def bad(self) -> int:
        raise Broken("no stock")

    @flow
    async def run(self) -> int:
        return await dag(self, final_step="fine")


@dataclass
@flow_type
class NoSteps:
    @flow
    async def run(self) -> int:
        return await dag(self)


@dataclass
@flow_type
class UnknownInput:
    @step(inputs={"value": "missing"})
    async def only(self, value: int) -> int:
        return value

    @flow
    async def run(self) -> int:
        return await dag(self)


def test_dag_failures_name_the_step_and_keep_its_error_and_retryability():
    async def body() -> None:
        with pytest.raises(DagExecutionError, match="Step execution failed: step 'bad'") as info:
            await Failing().run()
        assert isinstance(info.value.__cause__, Broken) and info.value.node == "bad"
        assert info.value.is_retryable() is False and isinstance(info.value, RuntimeError)
        with pytest.raises(DagExecutionError, match="No @step methods found in NoSteps"):
            await NoSteps().run()
        with pytest.raises(DagExecutionError, match="'missing', but 'missing' is not a @step method"):
            await UnknownInput().run()
        with pytest.raises(DagExecutionError, match="Final step 'nope' was not executed"):
            await dag(Diamond(1), final_step="nope")
        outcome = await Executor(Failing(), InMemoryExecutionLog(), "f1").run()
        assert outcome.status == "FAILED" and outcome.error.type_name == "DagExecutionError"
    run(body())


def test_a_registry_outside_a_flow_runs_its_nodes_with_values_and_resolves_each_once():
    async def body() -> None:
        registry = DeferredRegistry()
        a = registry.register("a", [], lambda _: asyncio.sleep(0, result=10))
        b = registry.register("b", ["a"], lambda i: asyncio.sleep(0, result=i["a"] + 5))
        with pytest.raises(RuntimeError, match="has not run"):
            await b.resolve()
        await registry.execute()
        assert (await a.resolve(), await b.resolve()) == (10, 15)
        with pytest.raises(RuntimeError, match="called twice"):
            await b.resolve()

        async def boom(_: object) -> int:
            raise ValueError("node broke")
        failing = DeferredRegistry()
        failing.register("ok", [], lambda _: asyncio.sleep(0, result=1))
        failing.register("boom", [], boom)
        with pytest.raises(DagExecutionError, match="DAG execution failed: step 'boom': node broke"):
            await failing.execute()
    run(body())


def test_summary_level_graph_and_execute_dag_refuse_or_describe_the_graph():
    async def body() -> None:
        registry = DeferredRegistry()
        for name, deps in [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]:
            registry.register(name, deps, lambda _: asyncio.sleep(0))
        assert registry.summary() == DagSummary(4, 1, 1, 2, ["a"], ["d"])
        graph = registry.level_graph()
        assert "Level 0: [a]\n" in graph and "Level 1: [b] [c] (2 run in parallel)" in graph
        assert "Level 2: [d]" in graph
        cyclic = [DeferredStep("x", ["y"], lambda _: asyncio.sleep(0)),
                  DeferredStep("y", ["x"], lambda _: asyncio.sleep(0))]
        with pytest.raises(ValueError, match="Cycle detected in the DAG: the dependency cycle x -> y -> x"):
            await execute_dag(cyclic)
        dangling = DeferredRegistry()
        dangling.register("a", ["ghost"], lambda _: asyncio.sleep(0))
        with pytest.raises(ValueError, match="Step 'a' depends on non-existent step 'ghost'"):
            dangling.validate()
    run(body())
