"""The contract of the operators' commands: QueryFlows, RetryFlow and ForkFlow, on every store."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ergon_actors.core import Failure, FlowStatus, StepStatus
from ergon_actors.errors import FlowNotFoundError, FlowStateError
from ergon_actors.storage.commands import QueryFlows, ScheduleFlow

from .test_contract import claim_one, step

pytestmark = pytest.mark.timeout(60)


async def every_page(log, query: QueryFlows) -> list[str]:
    """The flow ids of every page of a query, checking each page against its limit."""
    found: list[str] = []
    cursor = None
    for _ in range(1000):
        page = await log.query_flows(replace(query, cursor=cursor))
        assert len(page.flows) <= query.limit
        found += [f.flow_id for f in page.flows]
        cursor = page.cursor
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


async def fail(log, flow_id: str, error: str) -> None:
    claim = await claim_one(log, flow_id)
    await log.finish_flow(flow_id, claim.flow.epoch, FlowStatus.FAILED, error=Failure(error, "bad"))


async def populate(log) -> list[str]:
    """order-0..5 (type Order) and refund-6..8 (type Refund), scheduled in that order, with
    order-1 failed by ValueError, refund-7 by KeyError and order-3 complete."""
    names = [f"order-{i}" for i in range(6)] + [f"refund-{i}" for i in range(6, 9)]
    for name in names:
        await log.schedule_flow(name, "Order" if name.startswith("order") else "Refund", b"a")
        await asyncio.sleep(0.002)  # distinct creation times, as flows scheduled one by one have
    await fail(log, "order-1", "builtins:ValueError")
    await fail(log, "refund-7", "builtins:KeyError")
    claim = await claim_one(log, "order-3")
    await log.finish_flow("order-3", claim.flow.epoch, FlowStatus.COMPLETE, result=b"r")
    return names


@pytest.mark.parametrize("query, expected", [
    (QueryFlows(newest_first=False), lambda n: n),
    (QueryFlows(), lambda n: n[::-1]),
    (QueryFlows(statuses=("FAILED",)), lambda n: ["refund-7", "order-1"]),
    (QueryFlows(statuses=("FAILED", "COMPLETE"), newest_first=False), lambda n: ["order-1", "order-3", "refund-7"]),
    (QueryFlows(statuses=()), lambda n: []),
    (QueryFlows(flow_types=("Refund",), newest_first=False), lambda n: n[6:]),
    (QueryFlows(flow_types=("Refund", "Nope"), statuses=("PENDING",)), lambda n: ["refund-8", "refund-6"]),
    (QueryFlows(id_contains="der-", newest_first=False), lambda n: n[:6]),
    (QueryFlows(error_contains="ValueError"), lambda n: ["order-1"]),
    (QueryFlows(error_contains="builtins:"), lambda n: ["refund-7", "order-1"]),
    (QueryFlows(error_contains="Nope"), lambda n: []),
])
@pytest.mark.parametrize("limit", [1, 2, 50])
def test_query_filters_sorts_and_pages(store, query, expected, limit):
    async def body(log):
        names = await populate(log)
        assert await every_page(log, replace(query, limit=limit)) == expected(names)
    store.run(body)


def test_query_by_creation_time(store):
    async def body(log):
        names = await populate(log)
        created = [(await log.get_flow(n)).created_at for n in names]
        query = QueryFlows(created_after=created[2], created_before=created[5], newest_first=False, limit=2)
        assert await every_page(log, query) == names[2:5]
        page = await log.query_flows(QueryFlows(limit=0))
        assert page.flows == () and page.cursor is None
    store.run(body)


def test_retry_resumes_a_failed_flow_and_its_failed_children_as_a_new_attempt(store):
    async def body(log):
        await log.schedule_flow("p", "Parent", b"a")
        claim = await claim_one(log, "p")
        await log.append_step("p", claim.flow.epoch, step(0, name="reserve"))
        child = ScheduleFlow("p/1", "Child", b"c")
        assert await log.invoke_child("p", claim.flow.epoch, step(1, None, name="child:Child"), child) is None
        await fail(log, "p/1", "builtins:ValueError")
        (again,) = await log.claim("w1", 1, 30.0, flow_id="p")
        failed = await log.invoke_child("p", again.flow.epoch, step(1, None, name="child:Child"), child)
        assert failed.status == StepStatus.FAILED
        await log.finish_flow("p", again.flow.epoch, FlowStatus.FAILED, error=failed.error)

        await log.retry_failed("p")
        parent, child_flow = await log.get_flow("p"), await log.get_flow("p/1")
        assert (parent.status, parent.attempt, parent.owner, parent.result) == (FlowStatus.PENDING, 2, None, None)
        assert (child_flow.status, child_flow.attempt) == (FlowStatus.PENDING, 2)
        (resumed,) = await log.claim("w2", 1, 30.0, flow_id="p")
        assert [(s.position, s.status) for s in resumed.steps] == [(0, "COMPLETE"), (1, "FAILED")]
        assert resumed.flow.attempt == 2
        assert [e.kind for e in await log.load_history("p/1")][-1] == "retried"
        assert (await log.load_history("p"))[-2].details == {"attempt": 2}
    store.run(body)


def test_retry_refuses_flows_that_did_not_fail(store):
    async def body(log):
        await log.schedule_flow("pending", "Order", b"a")
        await log.schedule_flow("running", "Order", b"a")
        await claim_one(log, "running")
        for flow_id, status in (("pending", "PENDING"), ("running", "RUNNING")):
            with pytest.raises(FlowStateError) as info:
                await log.retry_failed(flow_id)
            assert (info.value.flow_id, info.value.status) == (flow_id, status)
        with pytest.raises(FlowNotFoundError):
            await log.retry_failed("nope")
        assert (await log.get_flow("pending")).attempt == 1
    store.run(body)


def test_fork_copies_completed_steps_before_a_position(store):
    async def body(log):
        await log.schedule_flow("f", "Order", b"args", version="v1")
        claim = await claim_one(log, "f")
        for position in range(3):
            await log.append_step("f", claim.flow.epoch, step(position, f"r{position}".encode()))
        failed = step(3, None, status=StepStatus.FAILED, error=Failure("builtins:ValueError", "x"))
        await log.append_step("f", claim.flow.epoch, failed)

        forked = await log.fork_flow("f", "g", 2)
        assert (forked.flow_id, forked.created) == ("g", True)
        copy = await log.get_flow("g")
        assert (copy.flow_type, copy.args, copy.version, copy.status) == ("Order", b"args", "v1", "PENDING")
        (resumed,) = await log.claim("w2", 1, 30.0, flow_id="g")
        assert [(s.position, s.result) for s in resumed.steps] == [(0, b"r0"), (1, b"r1")]
        everything = await log.fork_flow("f", "h", 99)
        assert everything.created
        assert [s.position for s in await log.load_steps("h")] == [0, 1, 2]  # the failed step is not copied

        again = await log.fork_flow("f", "g", 0)
        assert again.created is False
        assert len(await log.load_steps("g")) == 2
        assert [(e.kind, e.details) for e in await log.load_history("g")][:2] == [
            ("scheduled", {"type": "Order"}), ("forked", {"from": "f", "from_step": 2})]
        assert (await log.load_history("f"))[-2:][0].details == {"into": "g", "from_step": 2}
        with pytest.raises(FlowNotFoundError):
            await log.fork_flow("nope", "x", 1)
        assert await log.get_flow("x") is None
    store.run(body)
