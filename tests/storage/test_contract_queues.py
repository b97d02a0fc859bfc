"""The store contract for named queues: limits enforced by the claim, priority, deduplication.

Same harness as test_contract.py: each test runs once per store kind (see conftest.py), and
InMemoryExecutionLog with storage/queue_rules.py is the reference.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ergon_actors.core import FlowStatus
from ergon_actors.core.queues import QueueLimits
from ergon_actors.storage.commands import ClaimFlows, ScheduleFlow

from .test_contract import LEASE, POLL_DEADLINE, ids, poll_claim

pytestmark = pytest.mark.timeout(60)


async def put(log, flow_id: str, queue: str | None = "q", *, key: str | None = None, priority: int = 0,
              dedup_id: str | None = None, flow_type: str = "Order"):
    return await log.schedule_flow(flow_id, flow_type, b"x", queue=queue, key=key, priority=priority,
                                   dedup_id=dedup_id)


async def filled(log, n: int, **limits) -> None:
    """Declare queue q with these limits and schedule flows f0 ... f{n-1} onto it."""
    await log.declare_queue(QueueLimits("q", **limits))
    for i in range(n):
        await put(log, f"f{i}")


async def finish(log, claim) -> None:
    await log.finish_flow(claim.flow.flow_id, claim.flow.epoch, FlowStatus.COMPLETE, result=b"r")


def test_global_concurrency_holds_across_workers_and_frees_a_slot_when_a_flow_ends(store):
    async def body(log):
        await filled(log, 6, concurrency=3)
        first = await log.claim("w1", 2, LEASE, flow_types=("Order",))
        second = await log.claim("w2", 10, LEASE, flow_types=("Order",))
        assert ids(first) == ["f0", "f1"] and ids(second) == ["f2"]
        assert await log.claim("w3", 10, LEASE) == []
        await finish(log, first[0])
        assert ids(await log.claim("w3", 10, LEASE)) == ["f3"]
    store.run(body)


def test_a_released_or_crashed_worker_stops_counting_and_a_suspended_flow_does_not_count(store):
    async def body(log):
        await filled(log, 5, concurrency=2)
        a = sorted(await log.claim("w1", 10, LEASE), key=lambda c: c.flow.flow_id)
        assert ids(a) == ["f0", "f1"]
        await log.suspend_flow("f0", a[0].flow.epoch, None, waiting_on="signal:x")
        assert ids(await log.claim("w2", 10, LEASE)) == ["f2"]
        assert await log.release_worker("w2") == 1  # f2 is due again, behind f3 and f4 (due earlier)
        assert ids(await log.claim("w3", 10, LEASE)) == ["f3"]
        assert await log.claim("w3", 10, LEASE) == []
        await log.record_crash("w1", None, 9, "signal", 3)  # f1 alone on w1: blamed, due again
        got = await poll_claim(log, "w4", solo=True)
        assert len(got) == 1 and got[0].flow.flow_id in ("f1", "f4")  # f1 no longer counts: room for one
    store.run(body)


def test_worker_concurrency_limits_each_worker(store):
    async def body(log):
        await filled(log, 5, worker_concurrency=2)
        assert sorted(ids(await log.claim("w1", 10, LEASE))) == ["f0", "f1"]
        assert await log.claim("w1", 10, LEASE) == []
        assert sorted(ids(await log.claim("w2", 10, LEASE))) == ["f2", "f3"]
    store.run(body)


def test_key_concurrency_runs_one_flow_of_a_key_at_a_time(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", key_concurrency=1))
        for i, key in enumerate(["a", "a", "b", "a", "c", "b"]):
            await put(log, f"f{i}", key=key)
        first = sorted(await log.claim("w1", 10, LEASE), key=lambda c: c.flow.flow_id)
        assert ids(first) == ["f0", "f2", "f4"]
        assert await log.claim("w2", 10, LEASE) == []
        await finish(log, first[0])  # key a is free again
        assert ids(await log.claim("w2", 10, LEASE)) == ["f1"]
    store.run(body)


def test_rate_limit_counts_claims_in_the_period(store):
    async def body(log):
        await filled(log, 5, rate_limit=3, rate_period=0.5)
        start = time.time()
        got = await log.claim("w1", 2, LEASE)
        got += await log.claim("w2", 10, LEASE)
        assert sorted(ids(got)) == ["f0", "f1", "f2"]
        assert await log.claim("w2", 10, LEASE) == [] or time.time() - start >= 0.5
        deadline = time.monotonic() + POLL_DEADLINE
        more: list = []
        while len(more) < 2:
            more += await log.claim("w3", 10, LEASE)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert sorted(ids(more)) == ["f3", "f4"]
        history = [e for f in ("f0", "f3") for e in await log.load_history(f) if e.kind == "claimed"]
        assert history[1].at - history[0].at >= 0.5 - 0.01
    store.run(body)


def test_priority_higher_first_then_fifo_within_a_queue(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", concurrency=1))
        for flow_id, priority in [("low1", 0), ("high1", 5), ("low2", 0), ("mid", 2), ("high2", 5)]:
            await put(log, flow_id, priority=priority)
        order = []
        for _ in range(5):
            (claim,) = await log.claim("w1", 10, LEASE)
            order.append(claim.flow.flow_id)
            await finish(log, claim)
        assert order == ["high1", "high2", "mid", "low1", "low2"]
    store.run(body)


def test_named_queues_are_served_round_robin_then_the_default_queue(store):
    async def body(log):
        for i in range(3):
            await put(log, f"d{i}", None)
            await put(log, f"a{i}", "qa")
            await put(log, f"b{i}", "qb")
        assert sorted(ids(await log.claim("w1", 4, LEASE))) == ["a0", "a1", "b0", "b1"]
        assert sorted(ids(await log.claim("w1", 4, LEASE))) == ["a2", "b2", "d0", "d1"]
    store.run(body)


def test_claims_take_only_the_workers_types_from_a_queue(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", concurrency=5))
        await put(log, "o1", flow_type="Order")
        await put(log, "i1", flow_type="Invoice")
        await put(log, "o2", flow_type="Order")
        assert ids(await log.claim("w1", 10, LEASE, flow_types=("Invoice",))) == ["i1"]
        assert sorted(ids(await log.claim("w2", 10, LEASE, flow_types=("Order", "Refund")))) == ["o1", "o2"]
    store.run(body)


def test_a_lapsed_lease_in_a_full_queue_is_taken_over(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", concurrency=1))
        await put(log, "f0")
        await put(log, "f1")
        (claim,) = await log.claim("w1", 10, 0.05)
        got = await poll_claim(log, "w2")
        assert ids(got) == ["f0"] and got[0].flow.epoch == claim.flow.epoch + 1
        assert await log.claim("w2", 10, LEASE) == []
    store.run(body)


def test_dedup_returns_the_live_flow_and_allows_a_new_one_once_it_ended(store):
    async def body(log):
        first = await put(log, "f1", dedup_id="order-7")
        again = await put(log, "f2", dedup_id="order-7")
        other_queue = await put(log, "f3", "other", dedup_id="order-7")
        assert (first.flow_id, first.created) == ("f1", True)
        assert (again.flow_id, again.created) == ("f1", False)
        assert other_queue.created and await log.get_flow("f2") is None
        (claim,) = await log.claim("w1", 1, LEASE, flow_id="f1")
        await finish(log, claim)
        after = await put(log, "f4", dedup_id="order-7")
        assert (after.flow_id, after.created) == ("f4", True)
    store.run(body)


def test_declare_without_replace_keeps_limits_and_stats_show_each_queue(store):
    async def body(log):
        assert await log.declare_queue(QueueLimits("q", concurrency=2, rate_limit=10))
        assert not await log.declare_queue(QueueLimits("q", concurrency=9), replace=False)
        for i in range(4):
            await put(log, f"f{i}")
        await put(log, "later", "idle", flow_type="Invoice")
        await log.claim("w1", 10, LEASE, flow_types=("Order",))
        (idle, q) = await log.queue_stats()
        assert q.limits == QueueLimits("q", concurrency=2, rate_limit=10)
        assert (q.name, q.due, q.running, q.waiting, q.recent_starts) == ("q", 2, 2, 0, 2)
        assert (idle.name, idle.limits, idle.due, idle.running) == ("idle", None, 1, 0)
        assert await log.declare_queue(QueueLimits("q", concurrency=3))
        assert ids(await log.claim("w1", 10, LEASE, flow_types=("Order",))) == ["f2"]
        counts = await log.count_flows()
        assert counts["due"] == 2 and (await log.count_flows(limit=1))["due"] == 1
    store.run(body)


def test_one_batch_of_claims_cannot_pass_the_limit(store):
    async def body(log):
        await filled(log, 6, concurrency=2, rate_limit=3)
        claims = [ClaimFlows(f"w{i}", f"r{i}", 10, LEASE) for i in range(4)]
        results = await log.execute(claims)
        assert sum(len(r) for r in results) == 2
    store.run(body)


def test_a_suspect_of_a_full_queue_waits_for_room(store):
    async def body(log):
        await log.declare_queue(QueueLimits("q", concurrency=2))
        for flow_id in ("s0", "s1", "s2"):
            await put(log, flow_id)
        await put(log, "other", None)
        (s0,) = await log.claim("w0", 1, LEASE, flow_types=("Order",))
        assert ids(await log.claim("w1", 3, LEASE)) == ["s1", "other"]  # s2 waits for room
        await log.claim("w5", 1, LEASE, flow_id="s2")  # a claim by id passes the limit: the queue is full
        await log.record_crash("w1", None, 9, "signal", 3)  # s1 and other: suspects
        deadline = time.monotonic() + POLL_DEADLINE
        while (await log.count_flows())["due"] < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert ids(await log.claim("w2", 10, LEASE, solo=True)) in ([], ["other"])
        await finish(log, s0)
        taken: list[str] = []
        while "s1" not in taken:
            assert time.monotonic() < deadline
            taken += ids(await log.claim(f"w{len(taken) + 3}", 10, LEASE, solo=True))
    store.run(body)


def test_a_child_flow_goes_to_the_queue_it_was_scheduled_on(store):
    async def body(log):
        from ergon_actors.core import StepRecord
        await log.declare_queue(QueueLimits("q", concurrency=1))
        await put(log, "busy")
        await log.claim("w1", 1, LEASE, flow_types=("Order",))
        await put(log, "parent", None, flow_type="Parent")
        (p,) = await log.claim("w2", 1, LEASE, flow_types=("Parent",))
        child = ScheduleFlow("parent/1", "Order", b"c", queue="q")
        assert await log.invoke_child("parent", p.flow.epoch, StepRecord(1, "child:Order", 1), child) is None
        assert await log.claim("w3", 10, LEASE, flow_types=("Order",)) == []
    store.run(body)


def test_next_due_sees_the_flows_of_named_queues(store):
    async def body(log):
        now = time.time()
        await log.schedule_flow("later", "Order", b"x", ready_at=now + 100)
        await log.schedule_flow("sooner", "Order", b"x", ready_at=now + 50, queue="q", priority=3)
        assert await log.next_due(("Order",)) == pytest.approx(now + 50, abs=0.01)
        await put(log, "now")
        assert await log.next_due(("Order",)) <= time.time()
    store.run(body)
