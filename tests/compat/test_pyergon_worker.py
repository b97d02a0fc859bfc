"""PyErgon's Worker behaviours: shutdown lets running flows finish, flows with several @flow
methods run through the registered executor, and the Registry's get_executor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from ergon_actors import (Completed, FlowDefinitionError, InMemoryExecutionLog, Scheduler, TaskStatus, Worker,
                          WorkerError, WorkerHandle, flow, flow_type, step)
from ergon_actors.executor.worker import Registry
from tests.helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)

GATES: dict[str, asyncio.Event] = {}


@dataclass
@flow_type
class Gated:
    name: str

    @step
    async def wait_for_gate(self) -> str:
        GATES[f"{self.name}-started"].set()
        await GATES[self.name].wait()
        return self.name

    @step
    async def finish(self, name: str) -> str:
        return f"{name} done"

    @flow
    async def run(self) -> str:  # two steps: a drain would stop it between them
        return await self.finish(await self.wait_for_gate())


async def running_gated(name: str) -> tuple[InMemoryExecutionLog, WorkerHandle, str]:
    """A worker running a Gated flow that waits in its first step for GATES[name]."""
    GATES.update({name: asyncio.Event(), f"{name}-started": asyncio.Event()})
    store = InMemoryExecutionLog()
    worker = Worker(store, "w1").with_poll_interval(0.01)
    await worker.register(Gated)
    handle = await worker.start()
    flow_id = await Scheduler(store).schedule(Gated(name))
    await asyncio.wait_for(GATES[f"{name}-started"].wait(), 10)
    return store, handle, flow_id


async def _true(value: bool) -> bool:
    return value


def test_shutdown_lets_a_running_flow_finish_before_it_returns():
    async def body() -> None:
        store, handle, flow_id = await running_gated("a")
        stopping = asyncio.ensure_future(handle.shutdown(grace=20))
        await wait_until_async(lambda: _true(not handle.is_running()), what="the worker to stop claiming")
        for _ in range(5):  # let shutdown go on past the claim loop's end (a drain would halt now)
            await asyncio.sleep(0)
        assert not stopping.done()
        GATES["a"].set()
        await asyncio.wait_for(stopping, 20)
        done = await store.get_flow(flow_id)
        assert (done.status, done.value) == (TaskStatus.COMPLETE, "a done")
        assert not handle.is_running()
    run(body())


def test_shutdown_releases_a_flow_still_running_when_its_grace_ends():
    async def body() -> None:
        store, handle, flow_id = await running_gated("b")  # its gate is never opened
        await asyncio.wait_for(handle.shutdown(grace=1.0), 20)
        flow = await store.get_flow(flow_id)
        assert flow.status == TaskStatus.PENDING and flow.owner is None  # released for another worker
    run(body())


@dataclass
@flow_type
class TwoEntries:
    value: int

    @step
    async def double(self) -> int:
        return self.value * 2

    @flow
    async def doubled(self) -> int:
        return await self.double()

    @flow
    async def negated(self) -> int:
        return -self.value


def test_a_flow_class_with_several_entries_runs_the_one_its_registration_names():
    async def body() -> None:
        store = InMemoryExecutionLog()
        worker = Worker(store, "w1", poll_interval=0.01)
        with pytest.raises(FlowDefinitionError, match=r"several @flow methods \(doubled, negated\)"):
            await worker.register(TwoEntries)
        await worker.register(TwoEntries, lambda f: f.negated())
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(TwoEntries(21))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == -21
    run(body())


def test_registry_get_executor_runs_one_flow_from_its_stored_arguments():
    async def body() -> None:
        store = InMemoryExecutionLog()
        registry = Registry()
        assert registry.is_empty() and registry.get_executor("TwoEntries") is None
        registry.register(TwoEntries, lambda f: f.doubled())
        assert len(registry) == 1 and "TwoEntries" in registry
        execute = registry.get_executor("TwoEntries")
        from ergon_actors.executor.definition import encode_args
        outcome = await execute(encode_args(TwoEntries(5)), "r1", store, None)
        assert isinstance(outcome, Completed) and outcome.result == 10
        broken = await execute(b"\xc1 not ours", "r2", store, None)
        assert isinstance(broken.result, WorkerError) and "failed to deserialize" in str(broken.result)
        flow = await wait_until_async(lambda: store.get_flow("r1"), what="the flow in the store")
        assert flow.status == TaskStatus.COMPLETE
    run(body())
