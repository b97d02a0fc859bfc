"""The store contract for worker deaths: crashes recorded, blame, quarantine and suspects.

Same harness as test_contract.py: each test runs once per store kind (see conftest.py), and
InMemoryExecutionLog with the command docstrings in ergon_actors.storage.commands is the reference.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ergon_actors.core import Crash, FlowStatus, RetryPolicy, StepStatus
from ergon_actors.errors import InvalidCommandError, PoisonFlowError
from ergon_actors.storage.commands import RecordCrash, ScheduleFlow
from ergon_actors.storage.crashes import JITTER

from .test_contract import LEASE, POLL_DEADLINE, claim_one, ids, poll_claim, step

pytestmark = pytest.mark.timeout(60)

EXIT_1 = (1, None, "exit")  # exit code, signal, cause
SEGV = (None, 11, "signal")
HANG = (None, 9, "hang")


async def crash(log, worker: str, how: tuple = EXIT_1, max_crashes: int = 3):
    return await log.record_crash(worker, *how, max_crashes)


async def until_due(log, n: int) -> None:
    """Wait until `n` flows are runnable (a suspect is due at most JITTER seconds after its crash)."""
    deadline = time.monotonic() + POLL_DEADLINE
    while (await log.count_flows())["due"] < n:
        assert time.monotonic() < deadline, "the flows did not come due before the deadline"
        await asyncio.sleep(0.01)


async def suspects(log, *flow_ids: str) -> None:
    """Schedule the flows, let w1 claim them all and die: suspects, waited for until they are due."""
    for flow_id in flow_ids:
        await log.schedule_flow(flow_id, "Order", b"x")
    assert len(await log.claim("w1", len(flow_ids), LEASE)) == len(flow_ids)
    await crash(log, "w1", SEGV)
    await until_due(log, len(flow_ids))


async def crash_alone(log, flow_id: str, worker: str, how: tuple, max_crashes: int = 3):
    """Claim the flow solo as `worker` (waiting for it to be due), then let that worker die."""
    (claim,) = await poll_claim(log, worker, solo=True)
    assert ids([claim]) == [flow_id]
    (flow,) = await crash(log, worker, how, max_crashes)
    return flow


def test_a_crash_of_a_worker_holding_one_flow_is_recorded_and_blamed_on_it(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"x")
        claim = await claim_one(log, "a")
        await log.append_step("a", claim.flow.epoch, step(0))
        await log.append_step("a", claim.flow.epoch, step(1, None, status=StepStatus.FAILED, name="charge"))
        before = time.time()
        (flow,) = await crash(log, "w1")
        after = time.time()
        assert (flow.status, flow.owner, flow.lease_expires, flow.suspect) == (FlowStatus.PENDING, None, None, True)
        assert before <= flow.ready_at <= after + JITTER
        (entry,) = flow.crashes
        assert before <= entry.at <= after
        assert entry == Crash(entry.at, "w1", "exit", 1, None, 1, "charge", True)
        assert flow.blamed == 1 and flow.error is None
        assert await log.get_flow("a") == flow
        assert [s.position for s in await log.load_steps("a")] == [0, 1]  # the journal is kept
    store.run(body)


def test_a_crash_beside_other_flows_is_recorded_on_each_and_blamed_on_none(store):
    async def body(log):
        for flow_id in ("a", "b"):
            await log.schedule_flow(flow_id, "Order", b"x")
        await log.schedule_flow("elsewhere", "Order", b"x")
        assert sorted(ids(await log.claim("w1", 2, LEASE))) == ["a", "b"]
        await claim_one(log, "elsewhere", "w2")
        flows = await crash(log, "w1", SEGV)
        assert sorted(f.flow_id for f in flows) == ["a", "b"]
        for flow in flows:
            assert flow.status == FlowStatus.PENDING and flow.suspect
            assert [(c.cause, c.signal, c.exit_code, c.position, c.step, c.alone) for c in flow.crashes] == \
                [("signal", 11, None, 0, None, False)]
            assert flow.blamed == 0
        other = await log.get_flow("elsewhere")
        assert (other.status, other.owner, other.crashes, other.suspect) == (FlowStatus.RUNNING, "w2", (), False)
    store.run(body)


def test_a_flow_blamed_max_crashes_times_is_quarantined_as_poison(store):
    async def body(log):
        await log.schedule_flow("p", "Order", b"x")
        claim = await claim_one(log, "p")
        await log.append_step("p", claim.flow.epoch, step(0, name="reserve"))
        (first,) = await crash(log, "w1", EXIT_1)
        assert first.status == FlowStatus.PENDING
        second = await crash_alone(log, "p", "w2", SEGV)
        assert second.status == FlowStatus.PENDING and second.blamed == 2
        third = await crash_alone(log, "p", "w3", HANG)
        assert (third.status, third.owner, third.ready_at, third.suspect) == (FlowStatus.FAILED, None, None, False)
        assert third.quarantined and third.blamed == 3
        failure = third.error
        assert failure.is_poison and failure.retryable is False
        for part in ("'p'", "3 times", "step 1", "exit code 1 (exit)", "signal 11 (SIGSEGV) (signal)",
                     "signal 9 (SIGKILL) (hang)", time.strftime("%Y-%m-%dT", time.gmtime(third.crashes[0].at))):
            assert part in failure.message, (part, failure.message)
        assert isinstance(failure.to_exception(), PoisonFlowError)
        assert await log.get_flow("p") == third
        assert (await log.count_flows())["quarantined"] == 1
        assert (await log.count_flows(limit=1))["quarantined"] == 1
    store.run(body)


def test_a_quarantined_flow_is_never_claimed_retried_or_crashed_again(store):
    async def body(log):
        await log.schedule_flow("p", "Order", b"x")
        await claim_one(log, "p")
        (poison,) = await crash(log, "w1", max_crashes=1)
        assert poison.quarantined
        assert await log.claim("w2", 10, LEASE, solo=True) == []
        assert await log.claim("w2", 10, LEASE, flow_id="p", steal=True) == []
        assert (await log.count_flows())["due"] == 0
        assert not RetryPolicy.AGGRESSIVE.should_retry(1, poison.error.to_exception())
        assert await log.cancel_flow("p") == FlowStatus.FAILED  # as any failed flow
        assert await crash(log, "w1") == []
        assert await log.get_flow("p") == poison
    store.run(body)


def test_a_suspect_is_claimed_only_by_a_solo_claim_and_alone(store):
    async def body(log):
        await suspects(log, "s1", "s2")
        await log.schedule_flow("healthy", "Order", b"x")
        await log.schedule_flow("refund", "Refund", b"x")
        assert await log.claim("w2", 10, LEASE) == []  # busy workers take nothing while suspects wait
        assert await log.claim("w2", 10, LEASE, flow_types=("Order", "Shipping")) == []
        # a worker that serves none of the suspects' types goes on as before
        assert ids(await log.claim("w2", 10, LEASE, flow_types=("Refund",))) == ["refund"]
        (first,) = await log.claim("w3", 10, LEASE, solo=True)
        assert first.flow.suspect and first.flow.flow_id in ("s1", "s2")
        assert await log.claim("w2", 10, LEASE) == []  # the other suspect still waits
        (second,) = await log.claim("w4", 10, LEASE, solo=True)
        assert {first.flow.flow_id, second.flow.flow_id} == {"s1", "s2"}
        assert ids(await log.claim("w2", 10, LEASE)) == ["healthy"]
    store.run(body)


def test_a_suspect_whose_lease_lapsed_is_still_claimed_only_solo(store):
    async def body(log):
        await suspects(log, "s1", "s2")
        (taken,) = await log.claim("w2", 1, 0.0, solo=True)  # its lease ends as it is taken
        assert taken.flow.suspect and taken.flow.status == FlowStatus.RUNNING
        assert await log.claim("w3", 10, LEASE) == []  # the lapsed one is due, and a suspect
        claims = [*await log.claim("w3", 10, LEASE, solo=True), *await log.claim("w4", 10, LEASE, solo=True)]
        assert sorted(ids(claims)) == ["s1", "s2"]
        (again,) = [c for c in claims if c.flow.flow_id == taken.flow.flow_id]
        assert again.flow.epoch == taken.flow.epoch + 1 and again.flow.suspect
    store.run(body)


def test_a_solo_claim_without_suspects_due_claims_as_usual(store):
    async def body(log):
        for i in range(3):
            await log.schedule_flow(f"f{i}", "Order", b"x")
        assert sorted(ids(await log.claim("w1", 10, LEASE, solo=True))) == ["f0", "f1", "f2"]
    store.run(body)


@pytest.mark.parametrize("end", ["finish", "suspend"])
def test_the_suspect_flag_clears_when_its_run_ends_without_a_crash(store, end):
    async def body(log):
        await suspects(log, "a", "b")
        (claim,) = await log.claim("w2", 1, LEASE, solo=True)
        flow_id, epoch = claim.flow.flow_id, claim.flow.epoch
        if end == "finish":
            await log.finish_flow(flow_id, epoch, FlowStatus.COMPLETE, result=b"r")
        else:
            await log.suspend_flow(flow_id, epoch, time.time())
        after = await log.get_flow(flow_id)
        assert not after.suspect and len(after.crashes) == 1  # the crash stays in its history
        (other,) = await log.claim("w3", 1, LEASE, solo=True)
        assert other.flow.flow_id != flow_id
        if end == "suspend":  # due again, and no longer a suspect: any claim takes it
            assert ids(await log.claim("w4", 10, LEASE)) == [flow_id]
    store.run(body)


def test_record_crash_sent_again_changes_nothing(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"x")
        await claim_one(log, "a")
        command = RecordCrash("w1", 1, None, "exit", 3)
        (first,) = await log.execute([command])
        (again,) = await log.execute([command])
        assert again == []
        assert await log.get_flow("a") == first[0]
        assert len(first[0].crashes) == 1
    store.run(body)


def test_a_quarantined_child_wakes_its_parent_with_the_poison_failure(store):
    async def body(log):
        await log.schedule_flow("parent", "Parent", b"x")
        parent = await claim_one(log, "parent")
        wait = step(0, None, name="child")
        assert await log.invoke_child("parent", parent.flow.epoch, wait, ScheduleFlow("kid", "Kid", b"k")) is None
        await claim_one(log, "kid", "w2")
        (kid,) = await crash(log, "w2", max_crashes=1)
        assert kid.quarantined
        (resumed,) = await poll_claim(log, "w3", flow_types=("Parent",))
        record = await log.invoke_child("parent", resumed.flow.epoch, wait, ScheduleFlow("kid", "Kid", b"k"))
        assert record.status == StepStatus.FAILED and record.error == kid.error
    store.run(body)


def test_record_crash_with_bad_content_fails_alone(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"x")
        await claim_one(log, "a")
        bad_cause, bad_limit, count = await log.execute(
            [RecordCrash("w1", 1, None, "meteor", 3), RecordCrash("w1", 1, None, "exit", 0),
             ScheduleFlow("b", "O", b"")])
        assert isinstance(bad_cause, InvalidCommandError) and "meteor" in str(bad_cause)
        assert isinstance(bad_limit, InvalidCommandError) and "max_crashes" in str(bad_limit)
        assert count.created
        flow = await log.get_flow("a")
        assert (flow.status, flow.crashes) == (FlowStatus.RUNNING, ())
    store.run(body)


def test_a_crash_beside_many_flows_makes_suspects_in_groups_of_a_quarter_of_them(store):
    async def body(log):
        names = [f"s{i:02d}" for i in range(10)]
        await suspects(log, *names)
        flows = [await log.get_flow(name) for name in names]
        assert {f.suspect for f in flows} == {3}  # ceil(10 / SPLIT)
        assert await log.claim("busy", 10, LEASE) == []  # busy workers still take nothing
        groups = [ids(await log.claim(f"w{i}", 10, LEASE, solo=True)) for i in range(5)]
        assert [len(g) for g in groups] == [3, 3, 3, 1, 0]
        assert sorted(name for group in groups for name in group) == names
        assert ids(await log.claim("small", 10, LEASE, solo=True)) == []
    store.run(body)


def test_a_solo_claim_takes_no_more_than_its_limit_of_a_group(store):
    async def body(log):
        await suspects(log, *(f"s{i}" for i in range(8)))
        assert len(await log.claim("w2", 1, LEASE, solo=True)) == 1
        assert len(await log.claim("w3", 5, LEASE, solo=True)) == 2
    store.run(body)


def test_a_group_never_grows_and_takes_only_suspects_allowed_as_many_beside_them(store):
    async def body(log):
        await suspects(log, *(f"big{i}" for i in range(8)))  # groups of 2
        await log.schedule_flow("lone", "Order", b"x")
        await claim_one(log, "lone", "w9")
        await crash(log, "w9")  # blamed, a group of 1
        await until_due(log, 9)
        for flow_id in ("lone", "big0", "big1"):  # a claim by flow_id takes them together
            await claim_one(log, flow_id, "w8")
        after = {f.flow_id: f.suspect for f in await crash(log, "w8", SEGV)}
        assert after == {"lone": 1, "big0": 1, "big1": 1}  # ceil(3 / SPLIT), never more than before
        await until_due(log, 9)
        groups = []
        while claims := await log.claim(f"w{len(groups)}", 10, LEASE, solo=True):
            groups.append(sorted(ids(claims)))
        assert sorted(len(g) for g in groups) == [1, 1, 1, 2, 2, 2]
        assert all(len(g) == 1 for g in groups if set(g) & {"lone", "big0", "big1"})
    store.run(body)


def test_a_poison_flow_among_many_is_quarantined_in_few_crashes_and_blames_no_other(store):
    async def body(log):
        names = [f"f{i:03d}" for i in range(100)]
        for name in names:
            await log.schedule_flow(name, "Order", b"x")
        assert len(await log.claim("w0", 100, LEASE)) == 100
        crashes, claims = 0, 0
        await crash(log, "w0")
        crashes += 1
        while (flow := await log.get_flow("f042")).status != FlowStatus.FAILED:
            await until_due(log, 1)
            got = await log.claim(f"w{crashes}-{claims}", 100, LEASE, solo=True)
            claims += 1
            if "f042" in ids(got):  # the poison flow kills the worker that runs it
                await crash(log, f"w{crashes}-{claims - 1}")
                crashes += 1
            else:
                for claim in got:
                    await log.finish_flow(claim.flow.flow_id, claim.flow.epoch, FlowStatus.COMPLETE, result=b"r")
        assert flow.quarantined and flow.blamed == 3
        assert crashes <= 4 + 3  # 100 -> 25 -> 7 -> 2 -> 1 flows beside it, then blamed 3 times
        assert claims <= 30  # its 99 neighbours ran in groups (one by one would take over 100 claims)
        for name in names:
            other = await log.get_flow(name)
            if name != "f042":
                assert other.status == FlowStatus.COMPLETE and other.blamed == 0, other
    store.run(body)
