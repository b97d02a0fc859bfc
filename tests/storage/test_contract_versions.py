"""The contract of version-pinned claiming and MigrateFlows, on every store."""

from __future__ import annotations

import asyncio
import time

import pytest

from ergon_actors.core import FlowStatus
from ergon_actors.core.queues import QueueLimits
from ergon_actors.errors import InvalidCommandError
from ergon_actors.storage.commands import MigrateFlows

from .test_contract import LEASE, claim_one

pytestmark = pytest.mark.timeout(60)


async def claimed(log, worker: str, version: str | None, limit: int = 10, **kwargs) -> set[str]:
    return {c.flow.flow_id for c in await log.claim(worker, limit, LEASE, version=version, **kwargs)}


def test_a_worker_of_a_version_claims_flows_of_it_or_of_none(store):
    async def body(log):
        await log.schedule_flow("v1", "T", b"a", version="1")
        await log.schedule_flow("v2", "T", b"a", version="2")
        await log.schedule_flow("none", "T", b"a")
        assert await claimed(log, "w2", "2") == {"v2", "none"}
        assert await claimed(log, "w2", "2") == set()  # v1 waits for a worker of version 1
        assert await claimed(log, "w1", "1") == {"v1"}
    store.run(body)


def test_a_flow_of_no_version_is_pinned_to_the_version_that_claims_it(store):
    async def body(log):
        await log.schedule_flow("f", "T", b"a")
        assert await claimed(log, "w1", "1") == {"f"}
        flow = await log.get_flow("f")
        assert flow.version == "1"
        await log.release_worker("w1")  # back in the queue: now only version 1 takes it
        assert await claimed(log, "w2", "2") == set()
        assert await claimed(log, "w1", "1") == {"f"}
    store.run(body)


def test_a_worker_without_a_version_claims_every_flow_and_pins_none(store):
    async def body(log):
        await log.schedule_flow("v1", "T", b"a", version="1")
        await log.schedule_flow("none", "T", b"a")
        assert await claimed(log, "w", None) == {"v1", "none"}
        assert (await log.get_flow("none")).version is None
        assert (await log.get_flow("v1")).version == "1"
    store.run(body)


def test_a_claim_by_flow_id_ignores_versions(store):
    async def body(log):
        await log.schedule_flow("v1", "T", b"a", version="1")
        await log.schedule_flow("none", "T", b"a")
        assert await claimed(log, "w2", "2", flow_id="v1") == {"v1"}
        assert await claimed(log, "w2", "2", flow_id="none") == {"none"}
        assert (await log.get_flow("v1")).version == "1"
        assert (await log.get_flow("none")).version is None
    store.run(body)


def test_a_limit_is_filled_past_due_flows_of_other_versions(store):
    async def body(log):
        for i in range(12):
            await log.schedule_flow(f"old-{i}", "T", b"a", version="1")
        for i in range(3):
            await log.schedule_flow(f"new-{i}", "T", b"a", version="2")
        assert await claimed(log, "w2", "2", limit=2) | await claimed(log, "w2", "2", limit=2) == {
            "new-0", "new-1", "new-2"}
    store.run(body)


def test_a_suspect_of_another_version_does_not_hold_back_a_claim(store):
    async def body(log):
        await log.schedule_flow("a", "T", b"a", version="1")
        await log.schedule_flow("b", "T", b"a", version="1")
        assert await claimed(log, "w1", "1") == {"a", "b"}
        await log.record_crash("w1", None, 9, "signal", 3)  # both held: suspects, due within 50 ms
        await log.schedule_flow("c", "T", b"a", version="2")
        await log.schedule_flow("d", "T", b"a", version="1")
        flows = [await log.get_flow(i) for i in ("a", "b")]
        assert all(f.suspect for f in flows)
        due = max(f.ready_at for f in flows)
        deadline = time.monotonic() + 5
        while time.time() <= due and time.monotonic() < deadline:  # until both are due
            await asyncio.sleep(0.01)
        assert await claimed(log, "w1b", "1") == set()  # version 1's suspects run alone first
        assert await claimed(log, "w2", "2") == {"c"}
    store.run(body)


def test_migrate_moves_live_flows_of_a_version(store):
    async def body(log):
        for name in ("p", "r", "s", "done"):
            await log.schedule_flow(name, "T", b"a", version="1")
        await log.schedule_flow("other", "T", b"a", version="3")
        running = await claim_one(log, "r")
        suspended = await claim_one(log, "s")
        await log.suspend_flow("s", suspended.flow.epoch, None)
        finished = await claim_one(log, "done")
        await log.finish_flow("done", finished.flow.epoch, FlowStatus.COMPLETE, result=b"r")
        assert await log.migrate_flows("2", from_version="1") == 3
        versions = {i: (await log.get_flow(i)).version for i in ("p", "r", "s", "done", "other")}
        assert versions == {"p": "2", "r": "2", "s": "2", "done": "1", "other": "3"}
        assert (await log.get_flow("r")).epoch == running.flow.epoch  # still its worker's until it ends
        history = await log.load_history("p")
        assert (history[-1].kind, history[-1].details) == ("migrated", {"from": "1", "to": "2"})
        assert await log.migrate_flows("2", from_version="1") == 0
        assert await claimed(log, "w2", "2") == {"p"}
    store.run(body)


def test_migrate_by_id_and_to_no_version(store):
    async def body(log):
        await log.schedule_flow("a", "T", b"a", version="1")
        await log.schedule_flow("b", "T", b"a", version="1")
        await log.schedule_flow("c", "T", b"a")
        assert await log.migrate_flows(None, flow_ids=("a", "c", "missing")) == 1
        assert (await log.get_flow("a")).version is None and (await log.get_flow("b")).version == "1"
        assert await log.migrate_flows("2", from_version="1", flow_ids=("a", "b")) == 1
        assert (await log.get_flow("b")).version == "2"
        history = await log.load_history("a")
        assert history[-1].details == {"from": "1", "to": None}
    store.run(body)


def test_migrate_naming_no_flows_is_refused_on_its_own(store):
    async def body(log):
        await log.schedule_flow("a", "T", b"a", version="1")
        refused, moved = await log.execute([MigrateFlows("2"), MigrateFlows("2", "1")])
        assert isinstance(refused, InvalidCommandError) and "name the flows to migrate" in str(refused)
        assert moved == 1
    store.run(body)


def test_a_named_queue_gives_a_worker_only_the_flows_of_its_version(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", concurrency=5))
        await log.schedule_flow("q1", "T", b"a", version="1", queue="q", priority=5)
        await log.schedule_flow("q2", "T", b"a", version="2", queue="q")
        await log.schedule_flow("qn", "T", b"a", queue="q")
        await log.schedule_flow("d1", "T", b"a", version="1")
        assert await claimed(log, "w2", "2", flow_types=("T",)) == {"q2", "qn"}
        assert (await log.get_flow("qn")).version == "2"
        lapsing = await log.claim("w1", 10, 0.05, version="1")
        assert {c.flow.flow_id for c in lapsing} == {"q1", "d1"}
        lapsed = max(c.flow.lease_expires for c in lapsing)
        deadline = time.monotonic() + 10
        while time.time() <= lapsed:  # the store's clock is the wall clock
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await claimed(log, "w2b", "2") == set()  # lapsed leases of version 1, in a queue or not
        assert await claimed(log, "w2c", "2", flow_types=("T",)) == set()
        assert await claimed(log, "w1b", "1") == {"q1", "d1"}
    store.run(body)
