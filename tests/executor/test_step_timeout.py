"""The default step timeout: the Worker's and the Executor's step_timeout, and a step's own."""

import asyncio
from dataclasses import dataclass

import pytest

from ergon_actors import Executor, RetryPolicy, Scheduler, Worker, flow, flow_type, step
from ergon_actors.config import DEFAULT_STEP_TIMEOUT, Settings
from ergon_actors.core import FlowStatus
from tests.helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)

GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def clear_gates():
    GATES.clear()


@dataclass
@flow_type
class Hangs:
    name: str
    own_timeout: bool = False

    @step
    async def forever(self) -> str:
        tries = GATES.setdefault(f"{self.name}-tries", asyncio.Event())
        if not tries.is_set():  # the first try awaits what never comes
            tries.set()
            await GATES.setdefault(self.name, asyncio.Event()).wait()
        return "second try"

    @step(timeout=30)
    async def slow(self) -> str:
        await GATES.setdefault(self.name, asyncio.Event()).wait()
        return "released"

    @step(retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.0))
    async def retried(self) -> str:
        return await self.forever()

    @flow
    async def run(self) -> str:
        if self.own_timeout:
            return await self.slow()
        if self.name.startswith("retry"):
            return await self.retried()
        return await self.forever()


def test_a_step_past_the_workers_step_timeout_fails_and_its_own_timeout_wins(make_store):
    async def body():
        store = await make_store()
        worker = Worker(store, "w1", poll_interval=0.01, step_timeout=0.3)
        await worker.register(Hangs)
        handle = await worker.start()
        for flow_ in (Hangs("stuck"), Hangs("own", own_timeout=True), Hangs("retry-once")):
            await Scheduler(store).schedule(flow_, flow_.name)
        stuck = await store.wait_for_completion("stuck", timeout=20)
        assert (stuck.status, stuck.error.type_name) == (FlowStatus.FAILED, "StepTimeoutError")
        assert "0.3s" in stuck.error.message
        retried = await store.wait_for_completion("retry-once", timeout=20)
        assert (retried.status, retried.value) == (FlowStatus.COMPLETE, "second try")
        assert [s.tries for s in await store.load_steps("retry-once")] == [2]  # timed out once, retried
        await wait_until_async(lambda: _running(store, "own"), what="the step with its own timeout running")
        GATES["own"].set()  # released long after 0.3 s: its own timeout of 30 s applied
        own = await store.wait_for_completion("own", timeout=20)
        assert (own.status, own.value) == (FlowStatus.COMPLETE, "released")
        await handle.shutdown()
        await store.close()
    run(body())


async def _running(store, flow_id: str) -> bool:
    return (await store.get_flow(flow_id)).status == FlowStatus.RUNNING and flow_id in GATES


def test_the_executor_takes_a_step_timeout_and_the_default_is_the_settings_default(make_store):
    async def body():
        store = await make_store()
        outcome = await Executor(Hangs("e1"), store, "e1", step_timeout=0.2).run()
        assert (outcome.status, outcome.error.type_name) == (FlowStatus.FAILED, "StepTimeoutError")
        assert Executor(Hangs("e2"), store).step_timeout == Settings().step_timeout == DEFAULT_STEP_TIMEOUT
        assert Worker(store).step_timeout == DEFAULT_STEP_TIMEOUT
        await store.close()
    run(body())
