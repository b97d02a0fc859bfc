"""Timers, signals and children called inside a step's body take positions nested under the step,
so replaying the step from its journaled result (body skipped) leaves later positions unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ergon_actors import DeferredRegistry, Executor, InMemoryExecutionLog, flow, flow_type, sleep, step
from ergon_actors.executor.context import position_label
from ergon_actors.executor.timer import schedule_timer_named
from tests.helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)

RAN: list[str] = []


@dataclass
@flow_type
class CheckThenShip:
    order: str

    @step
    async def fraud_check(self) -> bool:
        RAN.append("fraud_check")
        await schedule_timer_named(0.05, "fraud")  # PyErgon's idiom: a timer inside a step
        return True

    @step
    async def ship(self) -> str:
        RAN.append("ship")
        return f"shipped {self.order}"

    @flow
    async def run(self) -> str:
        await self.fraud_check()
        await sleep(0.05, "cool-down")  # suspends again after fraud_check completed
        return await self.ship()


async def run_until_complete(executor: Executor) -> object:
    async def done() -> object:
        outcome = await executor.run()
        return outcome if outcome.is_complete or outcome.status == "FAILED" else None
    return await wait_until_async(done, timeout=10, interval=0.02, what="the flow to finish")


def test_a_timer_inside_a_step_does_not_shift_the_positions_after_the_step():
    async def body() -> None:
        RAN.clear()
        store = InMemoryExecutionLog()
        outcome = await run_until_complete(Executor(CheckThenShip("A1"), store, "o1"))
        assert outcome.result == "shipped A1", outcome
        steps = await store.load_steps("o1")
        assert [(position_label(s.position), s.name) for s in steps] == [
            ("0", "fraud_check"), ("1", "timer:cool-down"), ("2", "ship"), ("0.0", "timer:fraud")]
        assert RAN.count("ship") == 1
    run(body())


@dataclass
@flow_type
class TwoWaitingNodes:
    n: int = 0

    @step
    async def left(self) -> str:
        await schedule_timer_named(0.05, "left-wait")
        return "L"

    @step
    async def right(self) -> str:
        await schedule_timer_named(0.02, "right-wait")
        return "R"

    @flow
    async def run(self) -> str:
        registry = DeferredRegistry()
        left = registry.register("left", [], lambda _: self.left())
        right = registry.register("right", [], lambda _: self.right())
        await registry.execute()
        await sleep(0.02, "after")
        return await left.resolve() + await right.resolve()


def test_parallel_steps_waiting_inside_their_bodies_journal_the_same_positions_on_every_run():
    async def body() -> None:
        store = InMemoryExecutionLog()
        outcome = await run_until_complete(Executor(TwoWaitingNodes(), store, "d1"))
        assert outcome.result == "LR", outcome
        steps = {position_label(s.position): s.name for s in await store.load_steps("d1")}
        assert steps == {"0": "left", "1": "right", "2": "timer:after", "0.0": "timer:left-wait",
                         "1.0": "timer:right-wait"}
    run(body())
