"""The store contract for waits: signals, child flows, cancellation, and renewing named leases.

Same harness as test_contract.py: each test runs once per store kind (see conftest.py), and
InMemoryExecutionLog with the command docstrings in ergon_actors.wire is the reference.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from ergon_actors.core import Failure, FlowStatus, StepStatus
from ergon_actors.errors import FencedError, FlowCancelledError, FlowNotFoundError
from ergon_actors.storage.commands import (AppendStep, AwaitSignal, CancelFlow, FinishFlow, InvokeChild,
                                           ScheduleFlow, SuspendFlow)

from .test_contract import LEASE, claim_one, ids, poll_claim, step, without_time

pytestmark = pytest.mark.timeout(60)


def wait_step(position: int = 0):
    """The step a worker sends with AwaitSignal / InvokeChild: no result yet."""
    return step(position, None, name="wait")


async def running(log, flow_id: str, worker: str = "w1", flow_type: str = "Order") -> int:
    """Schedule and claim a flow; returns its epoch."""
    await log.schedule_flow(flow_id, flow_type, b"args")
    return (await claim_one(log, flow_id, worker)).flow.epoch


async def suspended_on_signal(log, flow_id: str, signal: str, worker: str = "w1") -> int:
    epoch = await running(log, flow_id, worker)
    assert await log.await_signal(flow_id, epoch, wait_step(), signal) is None
    return epoch


async def suspended_on_child(log, parent: str, child: str, worker: str = "w1") -> int:
    epoch = await running(log, parent, worker, "Parent")
    assert await log.invoke_child(parent, epoch, wait_step(), ScheduleFlow(child, "Child", b"c")) is None
    return epoch


def is_cancel_failure(error: Failure | None) -> bool:
    return error is not None and error.type.endswith("FlowCancelledError")


# -- await_signal / send_signal ------------------------------------------------------------------

def test_await_signal_already_sent_returns_the_payload_and_journals_it(store):
    async def body(log):
        epoch = await running(log, "a")
        assert await log.send_signal("go", b"payload") is True
        before = time.time()
        record = await log.await_signal("a", epoch, wait_step(0), "go")
        assert without_time(record) == replace(wait_step(0), status=StepStatus.COMPLETE, result=b"payload")
        assert before <= record.completed_at <= time.time()
        assert await log.load_steps("a") == [record]
        flow = await log.get_flow("a")
        assert (flow.status, flow.owner, flow.epoch, flow.waiting_on) == (FlowStatus.RUNNING, "w1", epoch, None)
        assert await log.waiting_signals() == []
    store.run(body)


def test_await_signal_not_sent_suspends_until_the_signal_wakes_it(store):
    async def body(log):
        epoch = await running(log, "a")
        assert await log.await_signal("a", epoch, wait_step(0), "go") is None
        flow = await log.get_flow("a")
        assert (flow.status, flow.waiting_on) == (FlowStatus.SUSPENDED, "signal:go")
        assert (flow.owner, flow.lease_expires, flow.ready_at, flow.epoch) == (None, None, None, epoch)
        assert await log.load_steps("a") == []
        assert await log.claim("w1", 10, LEASE) == []
        assert (await log.count_flows())["due"] == 0
        assert await log.waiting_signals() == ["go"]

        assert await log.send_signal("go", b"payload") is True
        woken = await log.get_flow("a")
        assert woken.status == FlowStatus.SUSPENDED
        assert woken.ready_at is not None and woken.ready_at <= time.time()
        assert await log.waiting_signals() == []

        (claim,) = await log.claim("w2", 10, LEASE)
        assert claim.flow.flow_id == "a"
        assert (claim.flow.epoch, claim.flow.owner, claim.flow.waiting_on) == (epoch + 1, "w2", None)
        record = await log.await_signal("a", claim.flow.epoch, wait_step(0), "go")
        assert without_time(record) == replace(wait_step(0), status=StepStatus.COMPLETE, result=b"payload")
        # a re-sent request at the same epoch answers the same record and journals nothing new
        assert await log.await_signal("a", claim.flow.epoch, wait_step(0), "go") == record
        assert await log.load_steps("a") == [record]
        assert (await log.get_flow("a")).status == FlowStatus.RUNNING
    store.run(body)


def test_a_signal_is_delivered_once(store):
    async def body(log):
        epoch_a = await suspended_on_signal(log, "a", "go")
        epoch_b = await suspended_on_signal(log, "b", "go")
        assert await log.send_signal("go", b"once") is True
        claims = await log.claim("w2", 10, LEASE)
        assert sorted(ids(claims)) == ["a", "b"]
        epochs = {c.flow.flow_id: c.flow.epoch for c in claims}
        assert epochs == {"a": epoch_a + 1, "b": epoch_b + 1}
        first = await log.await_signal("a", epochs["a"], wait_step(0), "go")
        assert first.result == b"once"
        assert await log.await_signal("b", epochs["b"], wait_step(0), "go") is None
        flow_b = await log.get_flow("b")
        assert (flow_b.status, flow_b.waiting_on, flow_b.ready_at) == (FlowStatus.SUSPENDED, "signal:go", None)
        assert await log.load_steps("b") == []
        assert await log.claim("w3", 10, LEASE) == []
        # a later flow does not get the consumed signal either
        epoch_c = await running(log, "c")
        assert await log.await_signal("c", epoch_c, wait_step(0), "go") is None
        assert (await log.get_flow("c")).status == FlowStatus.SUSPENDED
    store.run(body)


def test_send_signal_twice_keeps_the_first_payload(store):
    async def body(log):
        assert await log.send_signal("go", b"first") is True
        assert await log.send_signal("go", b"second") is False
        epoch = await running(log, "a")
        record = await log.await_signal("a", epoch, wait_step(0), "go")
        assert record.result == b"first"
        assert await log.send_signal("go", b"third") is False  # consumed: still sent once
    store.run(body)


def test_await_signal_with_timeout_becomes_claimable_without_the_signal(store):
    async def body(log):
        epoch = await running(log, "a")
        ready_at = time.time() + 0.3
        assert await log.await_signal("a", epoch, wait_step(0), "go", ready_at=ready_at) is None
        flow = await log.get_flow("a")
        assert (flow.status, flow.waiting_on) == (FlowStatus.SUSPENDED, "signal:go")
        assert flow.ready_at == pytest.approx(ready_at)
        assert await log.claim("w1", 10, LEASE) == []
        assert await log.waiting_signals() == ["go"]
        (claim,) = await poll_claim(log, "w2")
        assert time.time() >= ready_at
        assert claim.flow.flow_id == "a"
        assert (claim.flow.epoch, claim.flow.waiting_on, claim.flow.owner) == (epoch + 1, None, "w2")
        assert await log.waiting_signals() == []
        assert await log.load_steps("a") == []
    store.run(body)


def test_await_signal_with_stale_epoch_or_unknown_flow_is_refused(store):
    async def body(log):
        old = await running(log, "a", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        await log.send_signal("go", b"p")
        (refused, missing) = await log.execute([AwaitSignal("a", old, wait_step(0), "go"),
                                                AwaitSignal("ghost", 1, wait_step(0), "go")])
        assert isinstance(refused, FencedError) and refused.epoch == old
        assert isinstance(missing, FlowNotFoundError) and missing.flow_id == "ghost"
        assert await log.get_flow("a") == new.flow
        assert await log.load_steps("a") == []
        # the refused request did not consume the signal
        record = await log.await_signal("a", new.flow.epoch, wait_step(0), "go")
        assert record.result == b"p"
        with pytest.raises(FencedError):  # the old epoch cannot read the new epoch's record
            await log.await_signal("a", old, wait_step(0), "go")
    store.run(body)


# -- invoke_child --------------------------------------------------------------------------------

def test_invoke_child_schedules_it_and_suspends_the_parent_until_it_completes(store):
    async def body(log):
        epoch = await running(log, "p", flow_type="Parent")
        child = ScheduleFlow("c", "Child", b"child-args", version="v2")
        assert await log.invoke_child("p", epoch, wait_step(0), child) is None
        record_c = await log.get_flow("c")
        assert (record_c.status, record_c.parent_id, record_c.flow_type) == (FlowStatus.PENDING, "p", "Child")
        assert (record_c.args, record_c.version) == (b"child-args", "v2")
        parent = await log.get_flow("p")
        assert (parent.status, parent.waiting_on) == (FlowStatus.SUSPENDED, "child:c")
        assert (parent.owner, parent.lease_expires, parent.ready_at) == (None, None, None)
        assert await log.load_steps("p") == []
        assert await log.waiting_signals() == []

        (claim_c,) = await log.claim("w2", 10, LEASE)
        assert claim_c.flow.flow_id == "c"  # only the child is runnable
        await log.finish_flow("c", claim_c.flow.epoch, FlowStatus.COMPLETE, result=b"child-result")
        woken = await log.get_flow("p")
        assert woken.status == FlowStatus.SUSPENDED
        assert woken.ready_at is not None and woken.ready_at <= time.time()

        (claim_p,) = await log.claim("w3", 10, LEASE)
        assert claim_p.flow.flow_id == "p"
        assert (claim_p.flow.epoch, claim_p.flow.waiting_on) == (epoch + 1, None)
        record = await log.invoke_child("p", claim_p.flow.epoch, wait_step(0), child)
        assert without_time(record) == replace(wait_step(0), status=StepStatus.COMPLETE, result=b"child-result")
        assert await log.invoke_child("p", claim_p.flow.epoch, wait_step(0), child) == record
        assert await log.load_steps("p") == [record]
        assert sorted(f.flow_id for f in await log.list_flows()) == ["c", "p"]
        assert (await log.get_flow("p")).status == FlowStatus.RUNNING
    store.run(body)


def test_invoke_child_that_failed_journals_its_error(store):
    async def body(log):
        await suspended_on_child(log, "p", "c")
        (claim_c,) = await log.claim("w2", 1, LEASE, flow_id="c")
        failure = Failure.from_exception(ValueError("boom"))
        await log.finish_flow("c", claim_c.flow.epoch, FlowStatus.FAILED, error=failure)
        (claim_p,) = await poll_claim(log, "w3")
        assert claim_p.flow.flow_id == "p"
        record = await log.invoke_child("p", claim_p.flow.epoch, wait_step(0), ScheduleFlow("c", "Child", b"c"))
        assert record.status == StepStatus.FAILED
        assert (record.error.type, record.error.message) == ("builtins:ValueError", "boom")
        assert record.result is None
        assert await log.load_steps("p") == [record]
    store.run(body)


def test_reinvoking_a_live_child_never_creates_a_second_one(store):
    async def body(log):
        epoch = await suspended_on_child(log, "p", "c")
        (claim_p,) = await log.claim("w2", 1, LEASE, flow_id="p")  # woken before the child ended
        assert claim_p.flow.epoch == epoch + 1
        again = ScheduleFlow("c", "Other", b"other-args")
        assert await log.invoke_child("p", claim_p.flow.epoch, wait_step(0), again) is None
        flows = await log.list_flows()
        assert sorted(f.flow_id for f in flows) == ["c", "p"]
        child = await log.get_flow("c")
        assert (child.flow_type, child.args, child.status) == ("Child", b"c", FlowStatus.PENDING)
        assert (await log.get_flow("p")).waiting_on == "child:c"
    store.run(body)


def test_invoke_child_that_already_finished_returns_at_once(store):
    async def body(log):
        await log.schedule_flow("c", "Child", b"c", parent_id="p")
        claim_c = await claim_one(log, "c", "w2")
        await log.finish_flow("c", claim_c.flow.epoch, FlowStatus.COMPLETE, result=b"early")
        epoch = await running(log, "p", flow_type="Parent")
        record = await log.invoke_child("p", epoch, wait_step(3), ScheduleFlow("c", "Child", b"c"))
        assert without_time(record) == replace(wait_step(3), status=StepStatus.COMPLETE, result=b"early")
        parent = await log.get_flow("p")
        assert (parent.status, parent.owner, parent.waiting_on) == (FlowStatus.RUNNING, "w1", None)
        assert await log.load_steps("p") == [record]
    store.run(body)


def test_invoke_child_with_stale_epoch_is_refused_and_creates_nothing(store):
    async def body(log):
        old = await running(log, "p", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="p", steal=True)
        (refused,) = await log.execute([InvokeChild("p", old, wait_step(0), ScheduleFlow("c", "Child", b"c"))])
        assert isinstance(refused, FencedError)
        assert await log.get_flow("c") is None
        assert await log.get_flow("p") == new.flow
    store.run(body)


# -- cancel_flow ---------------------------------------------------------------------------------

def test_cancel_pending_flow_cancels_it_at_once(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        assert await log.cancel_flow("a") == FlowStatus.CANCELLED
        flow = await log.get_flow("a")
        assert (flow.status, flow.ready_at, flow.owner) == (FlowStatus.CANCELLED, None, None)
        assert is_cancel_failure(flow.error)
        assert await log.claim("w1", 10, LEASE) == []
        counts = await log.count_flows()
        assert (counts.get(FlowStatus.CANCELLED), counts.get(FlowStatus.PENDING, 0), counts["due"]) == (1, 0, 0)
        assert await log.cancel_flow("a") == FlowStatus.CANCELLED
        assert await log.get_flow("a") == flow
    store.run(body)


def test_cancel_suspended_flow_stops_its_wait(store):
    async def body(log):
        await suspended_on_signal(log, "a", "go")
        assert await log.cancel_flow("a") == FlowStatus.CANCELLED
        flow = await log.get_flow("a")
        assert (flow.status, flow.waiting_on) == (FlowStatus.CANCELLED, None)
        assert await log.waiting_signals() == []
        assert await log.send_signal("go", b"late") is True
        assert (await log.get_flow("a")).status == FlowStatus.CANCELLED
        assert await log.claim("w1", 10, LEASE) == []
    store.run(body)


def test_cancel_running_flow_refuses_its_writes_except_finishing_cancelled(store):
    async def body(log):
        epoch = await running(log, "a")
        await log.send_signal("go", b"p")
        assert await log.cancel_flow("a") == FlowStatus.RUNNING
        flow = await log.get_flow("a")
        assert (flow.status, flow.cancel_requested, flow.owner) == (FlowStatus.RUNNING, True, "w1")
        results = await log.execute([
            AppendStep("a", epoch, step(0)),
            SuspendFlow("a", epoch, None),
            FinishFlow("a", epoch, FlowStatus.COMPLETE, b"done"),
            AwaitSignal("a", epoch, wait_step(1), "go"),
            InvokeChild("a", epoch, wait_step(2), ScheduleFlow("c", "Child", b"c")),
        ])
        assert all(isinstance(r, FlowCancelledError) for r in results), results
        assert await log.load_steps("a") == []
        assert await log.get_flow("c") is None
        assert await log.get_flow("a") == flow

        await log.finish_flow("a", epoch, FlowStatus.CANCELLED)
        done = await log.get_flow("a")
        assert (done.status, done.owner, done.lease_expires) == (FlowStatus.CANCELLED, None, None)
        await log.finish_flow("a", epoch, FlowStatus.CANCELLED)  # a re-send is a no-op
        assert await log.get_flow("a") == done
        assert await log.cancel_flow("a") == FlowStatus.CANCELLED
        # the signal was not consumed by the refused AwaitSignal
        other = await running(log, "b")
        assert (await log.await_signal("b", other, wait_step(0), "go")).result == b"p"
    store.run(body)


def test_cancel_cascades_to_live_children_recursively(store):
    async def body(log):
        await suspended_on_child(log, "root", "mid")
        mid = await claim_one(log, "mid", "w2")
        assert await log.invoke_child("mid", mid.flow.epoch, wait_step(0),
                                      ScheduleFlow("leaf-pending", "Leaf", b"x")) is None
        await log.schedule_flow("leaf-running", "Leaf", b"x", parent_id="mid")
        leaf = await claim_one(log, "leaf-running", "w3")
        await log.schedule_flow("done", "Child", b"x", parent_id="root")
        done = await claim_one(log, "done", "w4")
        await log.finish_flow("done", done.flow.epoch, FlowStatus.COMPLETE, result=b"ok")
        await log.schedule_flow("stranger", "Other", b"x")

        assert await log.cancel_flow("root") == FlowStatus.CANCELLED
        for flow_id in ("root", "mid", "leaf-pending"):
            flow = await log.get_flow(flow_id)
            assert flow.status == FlowStatus.CANCELLED, flow_id
            assert is_cancel_failure(flow.error), flow_id
        running_leaf = await log.get_flow("leaf-running")
        assert (running_leaf.status, running_leaf.cancel_requested) == (FlowStatus.RUNNING, True)
        assert running_leaf.owner == "w3" and running_leaf.epoch == leaf.flow.epoch
        assert (await log.get_flow("done")).status == FlowStatus.COMPLETE
        assert (await log.get_flow("done")).result == b"ok"
        stranger = await log.get_flow("stranger")
        assert (stranger.status, stranger.cancel_requested) == (FlowStatus.PENDING, False)
        assert ids(await log.claim("w5", 10, LEASE)) == ["stranger"]
    store.run(body)


def test_cancelled_child_wakes_its_parent_with_a_failed_record(store):
    async def body(log):
        await suspended_on_child(log, "p", "c")
        assert await log.cancel_flow("c") == FlowStatus.CANCELLED
        parent = await log.get_flow("p")
        assert parent.status == FlowStatus.SUSPENDED
        assert parent.ready_at is not None and parent.ready_at <= time.time()
        assert parent.cancel_requested is False
        (claim,) = await log.claim("w2", 10, LEASE)
        assert claim.flow.flow_id == "p"
        record = await log.invoke_child("p", claim.flow.epoch, wait_step(0), ScheduleFlow("c", "Child", b"c"))
        assert record.status == StepStatus.FAILED
        assert is_cancel_failure(record.error)
        assert (await log.get_flow("c")).status == FlowStatus.CANCELLED
    store.run(body)


def test_running_child_cancelled_wakes_its_parent_when_it_stops(store):
    async def body(log):
        await suspended_on_child(log, "p", "c")
        child = await claim_one(log, "c", "w2")
        assert await log.cancel_flow("c") == FlowStatus.RUNNING
        assert (await log.get_flow("p")).ready_at is None  # not yet: the child still runs
        assert await log.claim("w3", 10, LEASE) == []
        await log.finish_flow("c", child.flow.epoch, FlowStatus.CANCELLED)
        assert (await log.get_flow("p")).ready_at <= time.time()
        (claim,) = await log.claim("w3", 10, LEASE)
        assert claim.flow.flow_id == "p"
        record = await log.invoke_child("p", claim.flow.epoch, wait_step(0), ScheduleFlow("c", "Child", b"c"))
        assert record.status == StepStatus.FAILED
        assert is_cancel_failure(record.error)
    store.run(body)


def test_cancel_terminal_flow_returns_its_status_unchanged(store):
    async def body(log):
        epoch = await running(log, "ok")
        await log.finish_flow("ok", epoch, FlowStatus.COMPLETE, result=b"r")
        epoch = await running(log, "bad")
        await log.finish_flow("bad", epoch, FlowStatus.FAILED, error=Failure.from_exception(KeyError("k")))
        before = [await log.get_flow("ok"), await log.get_flow("bad")]
        assert await log.cancel_flow("ok") == FlowStatus.COMPLETE
        assert await log.cancel_flow("bad") == FlowStatus.FAILED
        assert [await log.get_flow("ok"), await log.get_flow("bad")] == before
    store.run(body)


def test_cancel_unknown_flow_is_not_found(store):
    async def body(log):
        with pytest.raises(FlowNotFoundError):
            await log.cancel_flow("ghost")
        (result,) = await log.execute([CancelFlow("ghost")])
        assert isinstance(result, FlowNotFoundError) and result.flow_id == "ghost"
        assert await log.get_flow("ghost") is None
    store.run(body)


# -- waiting_signals -----------------------------------------------------------------------------

def test_waiting_signals_lists_names_waited_for_and_not_sent(store):
    async def body(log):
        await log.send_signal("z", b"z")
        taker = await running(log, "taker")
        assert (await log.await_signal("taker", taker, wait_step(0), "z")).result == b"z"
        await suspended_on_signal(log, "late", "z")  # waits for a signal already sent (and taken)
        await suspended_on_signal(log, "a", "y")
        await suspended_on_signal(log, "b", "x")
        await suspended_on_signal(log, "c", "y")
        await suspended_on_child(log, "p", "child")
        await running(log, "busy")
        assert await log.waiting_signals() == ["x", "y"]
        assert await log.waiting_signals(limit=1) == ["x"]
        assert await log.send_signal("x", b"x") is True
        assert await log.waiting_signals() == ["y"]
        assert await log.cancel_flow("a") == FlowStatus.CANCELLED
        assert await log.waiting_signals() == ["y"]  # c still waits for it
        assert await log.cancel_flow("c") == FlowStatus.CANCELLED
        assert await log.waiting_signals() == []
    store.run(body)


# -- renew_leases with flow_ids ------------------------------------------------------------------

def test_renew_leases_with_flow_ids_renews_only_those(store):
    async def body(log):
        for flow_id in ("a", "b", "c", "d"):
            await log.schedule_flow(flow_id, "Order", b"x")
        await claim_one(log, "a", "w1", lease=5)
        b = await claim_one(log, "b", "w1", lease=5)
        await claim_one(log, "c", "w1", lease=5)
        d = await claim_one(log, "d", "w2", lease=5)
        before = time.time()
        assert await log.renew_leases("w1", 100, ("a", "c", "d", "ghost")) == 2
        after = time.time()
        for flow_id in ("a", "c"):
            lease = (await log.get_flow(flow_id)).lease_expires
            assert before + 100 <= lease <= after + 100, flow_id
        assert await log.get_flow("b") == b.flow
        assert await log.get_flow("d") == d.flow
        assert await log.renew_leases("w1", 100, ()) == 0
        assert await log.get_flow("b") == b.flow
    store.run(body)


def test_invoke_child_with_ready_at_wakes_the_parent_then_though_the_child_runs_on(store):
    """The parent's own timeout: it is due at ready_at whatever its child does."""
    async def body(log):
        epoch = await running(log, "p", flow_type="Parent")
        due = time.time() + 0.2
        assert await log.invoke_child("p", epoch, wait_step(0), ScheduleFlow("c", "Child", b"c"), due) is None
        parent = await log.get_flow("p")
        assert (parent.status, parent.waiting_on) == (FlowStatus.SUSPENDED, "child:c")
        assert parent.ready_at == pytest.approx(due, abs=0.001)
        (claim_c,) = await log.claim("w2", 10, LEASE)
        assert claim_c.flow.flow_id == "c"  # the parent is not due yet
        (claim_p,) = await poll_claim(log, "w3")
        assert claim_p.flow.flow_id == "p" and claim_p.flow.epoch == epoch + 1
        assert time.time() >= due and (await log.get_flow("c")).status == FlowStatus.RUNNING
    store.run(body)
