"""A Worker serving a code version: it pins the flows it claims, and child flows inherit it."""

from __future__ import annotations

from dataclasses import dataclass

from ergon_actors import Scheduler, Worker, flow, flow_type
from tests.helpers import run


@dataclass
@flow_type
class Label:
    text: str

    @flow
    async def run(self) -> str:
        return self.text.upper()


@dataclass
@flow_type
class Box:
    text: str

    @flow
    async def run(self) -> str:
        return await self.invoke(Label(self.text)).result()


def test_a_worker_pins_what_it_claims_and_children_inherit_the_version(make_store) -> None:
    async def body() -> None:
        store = await make_store()
        other = await Scheduler(store).with_version("1").schedule(Box("old"), "old")
        worker = Worker(store, "w2", version="2", poll_interval=0.01)
        for cls in (Box, Label):
            await worker.register(cls)
        handle = await worker.start()
        try:
            box = await Scheduler(store).schedule(Box("new"), "new")
            assert (await store.wait_for_completion(box, timeout=30)).value == "NEW"
            flows = {f.flow_id: f for f in await store.list_flows()}
            assert (flows["new"].version, flows["new/0"].version) == ("2", "2")
            assert (flows[other].status, flows[other].version, flows[other].epoch) == ("PENDING", "1", 0)
        finally:
            await handle.shutdown()
            await store.close()
    run(body())
