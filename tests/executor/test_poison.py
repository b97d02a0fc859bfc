"""Suspects and quarantine with the in-process Worker, and its backoff while its store fails."""

import asyncio
import logging
from dataclasses import dataclass

import pytest

from ergon_actors import Executor, InMemoryExecutionLog, RetryPolicy, Scheduler, Worker, flow, flow_type, step
from ergon_actors.core import FlowStatus
from ergon_actors.errors import StoreUnavailableError
from ergon_actors.storage.commands import ClaimFlows
from tests.helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)

TRACE: list[tuple[str, str]] = []  # ("start" or "end", Probe name) as their steps run


def alone(name: str) -> bool:
    """True when the step of Probe `name` ran and no other Probe's step ran at the same time."""
    running: set[str] = set()
    ran = False
    for event, who in TRACE:
        if event == "start":
            running.add(who)
        else:
            running.discard(who)
        if name in running:
            ran = True
            if len(running) > 1:
                return False
    return ran


@pytest.fixture(autouse=True)
def clear_trace():
    TRACE.clear()


@dataclass
@flow_type
class Probe:
    name: str
    seconds: float = 0.05

    @step
    async def work(self) -> str:
        TRACE.append(("start", self.name))
        try:
            await asyncio.sleep(self.seconds)  # the work the step does, not a synchronisation
        finally:
            TRACE.append(("end", self.name))
        return self.name

    @flow(retry_policy=RetryPolicy.AGGRESSIVE)
    async def run(self) -> str:
        return await self.work()


async def serve(store, **options) -> tuple[Worker, object]:
    worker = Worker(store, "w1", poll_interval=0.01, **options)
    await worker.register(Probe)
    return worker, await worker.start()


async def make_suspects(store, *names: str) -> None:
    """Flows whose worker ("dead") died while it held them all: suspects, due within 0.5 s."""
    for name in names:
        await Scheduler(store).schedule(Probe(name), name, delay=3600)  # kept from the live worker
        await store.claim("dead", 1, 30.0, flow_id=name)
    crashed = await store.record_crash("dead", None, 9, "signal", 3)
    assert all(f.suspect and not f.blamed for f in crashed) and len(crashed) == len(names)


async def statuses(store, names) -> list[str]:
    return [(await store.get_flow(n)).status for n in names]


def test_suspects_run_alone_and_the_flows_beside_them_run_as_usual(make_store):
    async def body():
        store = await make_store()
        await make_suspects(store, "s1", "s2")
        healthy = [f"h{i}" for i in range(6)]
        for name in healthy:
            await Scheduler(store).schedule(Probe(name), name)
        _worker, handle = await serve(store, concurrency=8)
        names = ["s1", "s2", *healthy]
        await wait_until_async(lambda: _all(store, names, FlowStatus.COMPLETE), what="every flow complete")
        await handle.shutdown()
        assert alone("s1") and alone("s2")
        assert not any(alone(name) for name in healthy)  # the healthy ones ran side by side
        for name in ("s1", "s2"):
            flow = await store.get_flow(name)
            assert not flow.suspect and len(flow.crashes) == 1 and flow.blamed == 0
        await store.close()
    run(body())


async def _all(store, names, status) -> bool:
    return all(s == status for s in await statuses(store, names))


class ObservedStore(InMemoryExecutionLog):
    """The memory store, keeping each queue claim a worker made: (solo, flow ids it got)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[bool, list[str]]] = []

    async def execute(self, commands):
        results = await super().execute(commands)
        for command, result in zip(commands, results, strict=True):
            if isinstance(command, ClaimFlows) and command.flow_id is None:
                self.claims.append((command.solo, [c.flow.flow_id for c in result]))
        return results


def test_under_constant_load_a_busy_worker_stops_claiming_until_idle_then_runs_the_suspect():
    async def body():
        TRACE.clear()
        store = ObservedStore()
        worker, handle = await serve(store, concurrency=4)
        scheduled = []

        async def feed() -> None:  # more healthy flows than the worker can run: it is never idle
            for i in range(100_000):
                await Scheduler(store).schedule(Probe(f"h{i}", 0.2), f"h{i}")
                scheduled.append(f"h{i}")
                await asyncio.sleep(0.02)

        feeder = asyncio.get_running_loop().create_task(feed())
        await wait_until_async(lambda: _busy(worker), what="the worker busy")
        await make_suspects(store, "s1", "s2")
        await wait_until_async(lambda: _all(store, ["s1", "s2"], FlowStatus.COMPLETE), timeout=30,
                               what="the suspects complete while new flows keep coming")
        feeder.cancel()
        await handle.shutdown(grace=5)
        assert alone("s1") and alone("s2")
        solo = [i for i, (is_solo, got) in enumerate(store.claims) if got and got[0] in ("s1", "s2")]
        assert len(solo) == 2 and all(store.claims[i][0] for i in solo)
        assert all(len(store.claims[i][1]) == 1 for i in solo)
        before = store.claims[:solo[0]]
        assert any(is_solo is False and not got for is_solo, got in before)  # busy claims got nothing
        assert len(scheduled) > 10 and not alone(scheduled[0])
    run(body())


async def _busy(worker: Worker) -> bool:
    return worker.statistics().running >= 2


def test_a_quarantined_flow_is_never_run_again_despite_its_retry_policy(make_store):
    async def body():
        store = await make_store()
        await Scheduler(store).schedule(Probe("poison"), "poison", delay=3600)
        await store.claim("dead", 1, 30.0, flow_id="poison")
        (poison,) = await store.record_crash("dead", 1, None, "exit", 1)
        assert poison.quarantined
        _worker, handle = await serve(store)
        await Scheduler(store).schedule(Probe("after"), "after")
        await store.wait_for_completion("after", timeout=20)  # the worker polled past the poison one
        await handle.shutdown()
        outcome = await Executor(Probe("poison"), store, "poison").run()
        assert (outcome.status, outcome.error.type_name) == (FlowStatus.FAILED, "PoisonFlowError")
        assert await store.get_flow("poison") == poison
        assert ("start", "poison") not in TRACE  # its step never ran
        await store.close()
    run(body())


class FailingStore(InMemoryExecutionLog):
    """The memory store, failing every command while `down` is set, as a store outage does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def execute(self, commands):
        if self.down:
            self.refused += 1
            raise StoreUnavailableError("store is down (test)")
        return await super().execute(commands)


def test_a_failing_store_is_retried_with_backoff_and_logged_once_per_interval(caplog):
    async def body():
        store = FailingStore()
        _worker, handle = await serve(store)
        store.down = True
        await wait_until_async(lambda: _at_least(store, 6), what="six refused claims")
        failures = [r for r in caplog.records if r.name == "ergon_actors.executor.worker"
                    and r.levelno == logging.WARNING]
        assert len(failures) == 1 and "StoreUnavailableError: store is down" in failures[0].getMessage()
        assert not any(r.exc_info for r in failures)  # no traceback per attempt
        store.down = False
        await Scheduler(store).schedule(Probe("later"), "later")
        await store.wait_for_completion("later", timeout=20)
        assert any("works again after" in r.getMessage() for r in caplog.records)
        await handle.shutdown()
    caplog.set_level(logging.INFO, logger="ergon_actors.executor.worker")
    run(body())


async def _at_least(store: FailingStore, n: int) -> bool:
    return store.refused >= n
