"""Observers of an in-process Worker: OpenTelemetry spans of each run and step body, and the
counts a worker actor sends in its heartbeats, told of the same runs."""

import asyncio
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ergon_actors import RetryableError, RetryPolicy, Scheduler, Worker, await_external_signal, flow, flow_type, step
from ergon_actors.executor.observe import combine
from ergon_actors.runtime.stats import WorkerCounts
from ergon_actors.runtime.messages import TypeCount, WorkerStats
from ergon_actors.runtime.tracing import FlowTracer
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)
TRIES: list[str] = []
CURRENT: list[str] = []  # the current span's name, as code inside the step body sees it


@pytest.fixture(autouse=True)
def clear_tries():
    TRIES.clear()
    CURRENT.clear()


@dataclass
@flow_type
class Shipment:
    order: str

    @step
    async def pack(self) -> str:
        CURRENT.append(getattr(trace.get_current_span(), "name", ""))
        return f"packed-{self.order}"

    @step(retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.01, multiplier=1.0))
    async def label(self, packed: str) -> str:
        TRIES.append(packed)
        if len(TRIES) == 1:
            raise RetryableError("printer jammed")
        return f"label-{packed}"

    @step
    async def wait_for_pickup(self) -> str:
        return str(await await_external_signal(f"pickup-{self.order}"))

    @flow
    async def run(self) -> str:
        return await self.wait_for_pickup() + "/" + await self.label(await self.pack())


def test_spans_of_each_run_and_step_carry_flow_id_attempt_and_worker(make_store):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    counts = WorkerCounts()

    async def body():
        store = await make_store()
        worker = Worker(store, "w1", poll_interval=0.01,
                        observer=combine([FlowTracer(provider.get_tracer("test")), counts]))
        await worker.register(Shipment)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(Shipment("A1"))
        while not await store.waiting_signals():
            await asyncio.sleep(0.01)
        await store.send_signal("pickup-A1", b"\xa3van")  # msgpack "van"
        record = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        await store.close()
        return flow_id, record

    flow_id, record = run(body())
    assert record.status == "COMPLETE"
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "flow Shipment"]
    steps = [s for s in spans if s.name.startswith("step ")]
    # run 1 waits for the signal; run 2 gets it, packs, and the label fails once; run 3 labels
    assert [s.attributes["ergon.outcome"] for s in runs] == ["SUSPENDED", "SUSPENDED", "COMPLETE"]
    assert all(type(s.attributes["ergon.outcome"]) is str for s in spans)
    assert [(s.name, s.attributes["ergon.try"], s.attributes["ergon.outcome"]) for s in steps] == [
        ("step wait_for_pickup", 1, "interrupted"), ("step wait_for_pickup", 1, "completed"),
        ("step pack", 1, "completed"), ("step label", 1, "failed"), ("step label", 2, "completed")]
    for span in runs + steps:
        assert span.attributes["ergon.flow_id"] == flow_id and span.attributes["ergon.worker_id"] == "w1"
    assert [s.attributes["ergon.attempt"] for s in runs] == [1, 1, 1]
    by_run = {s.context.span_id: s for s in runs}
    assert all(s.parent is not None and s.parent.span_id in by_run for s in steps)  # each inside its run
    assert by_run[steps[3].parent.span_id].attributes["ergon.outcome"] == "SUSPENDED"  # the retry's wait
    assert steps[3].status.status_code.name == "ERROR"
    assert CURRENT == ["step pack"]  # spans started in a step body are the step's children
    stats = counts.fill(WorkerStats())
    assert (stats.steps_started, stats.steps_completed, stats.steps_failed) == (5, 3, 1)
    assert stats.ended == (TypeCount("Shipment", "COMPLETE", 1),)
