"""The event history contract: every store appends the same events, in order, with the change.

A flow is driven through a step retry, a timer, a signal, a crash (its worker released), a
fenced write from the dead worker, a lapsed lease and a flow retry; its history must tell
exactly that story, in that order, on every store.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace

import pytest

from ergon_actors.core import Failure, FlowStatus, StepStatus
from ergon_actors.errors import FencedError
from ergon_actors.storage.commands import CancelFlow, ScheduleFlow

from .test_contract import LEASE, POLL_DEADLINE, claim_one, poll_claim, step

pytestmark = pytest.mark.timeout(60)

BOOM = Failure("builtins:ValueError", "boom")


def story(events) -> list[tuple]:
    """Each event as (kind, the details that do not depend on the clock)."""
    timeless = ("at", "retry_at", "until", "ready_at")
    return [(e.kind, {k: v for k, v in e.details.items() if k not in timeless}) for e in events]


async def poll_lapsed(log, flow_id: str) -> None:
    """Wait until the flow's (short) lease has lapsed, so another claim takes it over."""
    deadline = time.monotonic() + POLL_DEADLINE
    while (await log.get_flow(flow_id)).lease_expires > time.time():
        assert time.monotonic() < deadline, "the lease did not lapse before the deadline"
        await asyncio.sleep(0.02)


def test_history_of_a_retried_timed_signalled_crashed_and_fenced_flow(store):
    async def body(log):
        await log.schedule_flow("f", "Order", b"args")
        c1 = await claim_one(log, "f", "w1")
        await log.append_step("f", c1.flow.epoch, step(0, name="reserve"))
        failed = step(1, None, status=StepStatus.FAILED, name="charge", error=BOOM)
        await log.append_step("f", c1.flow.epoch, replace(failed, retry_at=time.time()))
        await log.suspend_flow("f", c1.flow.epoch, time.time(), waiting_on="retry:charge")
        (c2,) = await poll_claim(log, "w1")
        await log.append_step("f", c2.flow.epoch, replace(step(1, name="charge"), tries=2))
        await log.suspend_flow("f", c2.flow.epoch, time.time(), waiting_on="timer:nap")
        (c3,) = await poll_claim(log, "w2")
        assert await log.await_signal("f", c3.flow.epoch, step(2, None, name="signal:go"), "go") is None
        assert (await log.get_flow("f")).waiting_on == "signal:go"
        assert await log.send_signal("go", b"payload") is True
        (c4,) = await poll_claim(log, "w2")
        taken = await log.await_signal("f", c4.flow.epoch, step(2, None, name="signal:go"), "go")
        assert taken.result == b"payload"
        assert await log.release_worker("w2") == 1  # w2 crashed: its flow goes back to the queue
        assert len(await log.claim("w3", 1, 0.2, flow_id="f")) == 1
        with pytest.raises(FencedError):  # the dead worker's late write
            await log.append_step("f", c4.flow.epoch, step(3, name="ship"))
        await poll_lapsed(log, "f")
        (c6,) = await poll_claim(log, "w4")
        await log.suspend_flow("f", c6.flow.epoch, time.time(), attempt=2, error=BOOM)
        (c7,) = await poll_claim(log, "w4")
        await log.append_step("f", c7.flow.epoch, step(3, name="ship", attempt=2))
        await log.finish_flow("f", c7.flow.epoch, FlowStatus.COMPLETE, result=b"done")
        history = await log.load_history("f")
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert all(a.at <= b.at + 0.001 for a, b in itertools.pairwise(history))
        assert story(history) == [
            ("scheduled", {"type": "Order"}),
            ("claimed", {"worker": "w1", "epoch": 1}),
            ("step_completed", {"position": 0, "name": "reserve", "attempt": 1, "tries": 1}),
            ("step_failed", {"position": 1, "name": "charge", "attempt": 1, "tries": 1,
                             "error": "builtins:ValueError"}),
            ("retry_scheduled", {"step": "charge"}),
            ("claimed", {"worker": "w1", "epoch": 2}),
            ("step_completed", {"position": 1, "name": "charge", "attempt": 1, "tries": 2}),
            ("timer_set", {"name": "nap"}),
            ("timer_fired", {"name": "nap"}),
            ("claimed", {"worker": "w2", "epoch": 3}),
            ("signal_waiting", {"name": "go"}),
            ("claimed", {"worker": "w2", "epoch": 4}),
            ("signal_received", {"name": "go"}),
            ("released", {"worker": "w2", "epoch": 4}),
            ("claimed", {"worker": "w3", "epoch": 5}),
            ("fenced", {"epoch": 4, "command": "AppendStep", "reason": "flow is at epoch 5"}),
            ("lease_expired", {"worker": "w3", "epoch": 5}),
            ("claimed", {"worker": "w4", "epoch": 6}),
            ("retry_scheduled", {"attempt": 2, "error": "builtins:ValueError"}),
            ("claimed", {"worker": "w4", "epoch": 7}),
            ("step_completed", {"position": 3, "name": "ship", "attempt": 2, "tries": 1}),
            ("completed", {}),
        ]
        step_failed = history[3].details
        assert step_failed["retry_at"] == pytest.approx(time.time(), abs=30)
        timer = history[7].details
        assert timer["at"] == pytest.approx(time.time(), abs=30)
    store.run(body)


async def waiting_for_a_child(log, child_type: str) -> ScheduleFlow:
    """Parent flow p, claimed by w1, waits for its child p/0 (returned) at position 0."""
    await log.schedule_flow("p", "Parent", b"a")
    parent = await claim_one(log, "p")
    child = ScheduleFlow("p/0", child_type, b"c")
    assert await log.invoke_child("p", parent.flow.epoch, step(0, None, name=f"child:{child_type}"), child) is None
    return child


def test_history_of_children_cancellation_and_failure(store):
    async def body(log):
        child = await waiting_for_a_child(log, "Child")
        assert await log.cancel_flow("p/0") == FlowStatus.CANCELLED
        (resumed,) = await poll_claim(log, "w1", flow_types=("Parent",))
        outcome = await log.invoke_child("p", resumed.flow.epoch, step(0, None, name="child:Child"), child)
        assert outcome.status == StepStatus.FAILED
        await log.finish_flow("p", resumed.flow.epoch, FlowStatus.FAILED, error=BOOM)

        await log.schedule_flow("r", "Order", b"a", ready_at=time.time() + 3600)
        running = await claim_one(log, "r")
        (status,) = await log.execute([CancelFlow("r")])
        assert status == FlowStatus.RUNNING
        await log.finish_flow("r", running.flow.epoch, FlowStatus.CANCELLED, error=Failure.cancelled("r"))

        assert story(await log.load_history("p")) == [
            ("scheduled", {"type": "Parent"}),
            ("claimed", {"worker": "w1", "epoch": 1}),
            ("child_started", {"child": "p/0", "type": "Child"}),
            ("child_finished", {"child": "p/0", "status": "CANCELLED"}),
            ("claimed", {"worker": "w1", "epoch": 2}),
            ("step_failed", {"position": 0, "name": "child:Child", "attempt": 1, "tries": 1,
                             "error": "ergon_actors.errors:FlowCancelledError"}),
            ("failed", {"error": "builtins:ValueError", "message": "boom"}),
        ]
        assert story(await log.load_history("p/0")) == [
            ("scheduled", {"type": "Child", "parent": "p"}), ("cancelled", {})]
        assert story(await log.load_history("r")) == [
            ("scheduled", {"type": "Order"}), ("claimed", {"worker": "w1", "epoch": 1}),
            ("cancel_requested", {}), ("cancelled", {})]
    store.run(body)


def test_history_pages_after_a_seq_and_is_empty_for_unknown_flows(store):
    async def body(log):
        await log.schedule_flow("f", "Order", b"a")
        claim = await claim_one(log, "f")
        for position in range(5):
            await log.append_step("f", claim.flow.epoch, step(position))
        everything = await log.load_history("f")
        assert len(everything) == 7
        assert await log.load_history("f", after=2, limit=3) == everything[2:5]
        assert await log.load_history("f", after=7) == []
        assert await log.load_history("f", after=-5, limit=1) == everything[:1]
        assert await log.load_history("f", limit=0) == []
        assert await log.load_history("nope") == []
    store.run(body)


def test_resent_writes_and_renewals_add_no_events(store):
    async def body(log):
        await log.schedule_flow("f", "Order", b"a")
        claim = await claim_one(log, "f")
        epoch = claim.flow.epoch
        await log.append_step("f", epoch, step(0))
        await log.append_step("f", epoch, step(0))  # a re-send after its commit
        await log.renew_leases("w1", LEASE)
        await log.finish_flow("f", epoch, FlowStatus.COMPLETE, result=b"r")
        await log.finish_flow("f", epoch, FlowStatus.COMPLETE, result=b"r")
        assert [e.kind for e in await log.load_history("f")] == [
            "scheduled", "claimed", "step_completed", "completed"]
    store.run(body)


def test_history_of_crashes_quarantine_and_a_retry_of_the_poison_flow(store):
    async def body(log):
        await waiting_for_a_child(log, "Kid")
        (claim,) = await log.claim("w2", 1, LEASE, flow_id="p/0")
        await log.append_step("p/0", claim.flow.epoch, step(0, name="prepare"))
        (crashed,) = await log.record_crash("w2", None, 11, "signal", 1)  # one blamed crash: poison
        assert crashed.quarantined
        assert story(await log.load_history("p/0")) == [
            ("scheduled", {"type": "Kid", "parent": "p"}),
            ("claimed", {"worker": "w2", "epoch": 1}),
            ("step_completed", {"position": 0, "name": "prepare", "attempt": 1, "tries": 1}),
            ("crashed", {"worker": "w2", "cause": "signal", "exit_code": None, "signal": 11, "position": 1,
                         "step": None, "alone": True}),
            ("quarantined", {"crashes": 1}),
        ]
        assert story(await log.load_history("p"))[-1] == ("child_finished", {"child": "p/0", "status": "FAILED"})

        await log.retry_failed("p/0")  # an operator retries it, e.g. after a fix
        again = await log.get_flow("p/0")
        assert (again.status, again.quarantined, again.suspect, again.attempt) == ("PENDING", False, 0, 2)
        assert len(again.crashes) == 1  # what happened stays recorded
        assert (await log.count_flows()).get("quarantined", 0) == 0
        assert story(await log.load_history("p/0"))[-1] == ("retried", {"attempt": 2})
    store.run(body)
