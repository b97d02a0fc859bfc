"""The store contract: every ExecutionLog implementation must pass these, with the same results.

Semantics come from the command docstrings in ergon_actors.wire; InMemoryExecutionLog is the
reference. Each test hands an async body to `store.run` (see conftest.py), once per store kind.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from ergon_actors.core import Failure, FlowStatus, StepRecord, StepStatus
from ergon_actors.errors import (FencedError, FlowBusyError, FlowNotFoundError, InvalidCommandError,
                                 TimeoutExpired)
from ergon_actors.storage import LogBase
from ergon_actors.storage.commands import (AppendStep, Claim, ClaimFlows, CountFlows, FinishFlow, GetFlow,
                                           LoadSteps, ScheduleFlow, Scheduled, SuspendFlow)

pytestmark = pytest.mark.timeout(60)

LEASE = 30.0  # a lease that cannot expire during a test
POLL_DEADLINE = 10.0  # seconds a test waits for a lease or a ready_at to come due


def step(position: int, result: bytes | None = b"r", *, status: str = StepStatus.COMPLETE,
         name: str = "do_thing", error: Failure | None = None, attempt: int = 1) -> StepRecord:
    return StepRecord(position, name, 1000 + position, status, result, error, attempt)


def without_time(s: StepRecord) -> StepRecord:
    """The step as the worker sent it: the store stamps completed_at itself."""
    return replace(s, completed_at=0.0)


async def claim_one(log: LogBase, flow_id: str, worker: str = "w1", lease: float = LEASE) -> Claim:
    (claim,) = await log.claim(worker, 1, lease, flow_id=flow_id)
    return claim


async def poll_claim(log: LogBase, worker: str, **kwargs: object) -> list[Claim]:
    """Claim until something comes due, failing after POLL_DEADLINE seconds."""
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        claims = await log.claim(worker, 10, LEASE, **kwargs)
        if claims:
            return claims
        assert time.monotonic() < deadline, "nothing became claimable before the deadline"
        await asyncio.sleep(0.01)


def ids(claims: list[Claim]) -> list[str]:
    return [c.flow.flow_id for c in claims]


# -- schedule ------------------------------------------------------------------------------------

def test_schedule_creates_pending_flow(store):
    async def body(log):
        before = time.time()
        scheduled = await log.schedule_flow("f1", "Order", b"args-1", version="v1", parent_id="p0")
        assert scheduled == Scheduled("f1", True)
        flow = await log.get_flow("f1")
        assert flow is not None
        assert (flow.flow_id, flow.flow_type, flow.args) == ("f1", "Order", b"args-1")
        assert flow.status == FlowStatus.PENDING
        assert (flow.version, flow.parent_id) == ("v1", "p0")
        assert (flow.epoch, flow.attempt, flow.owner, flow.lease_expires) == (0, 1, None, None)
        assert flow.result is None and flow.error is None
        assert before <= flow.created_at <= time.time()
        assert await log.get_flow("nope") is None
    store.run(body)


def test_schedule_same_flow_id_is_idempotent(store):
    async def body(log):
        assert (await log.schedule_flow("f1", "Order", b"first")).created is True
        again = await log.schedule_flow("f1", "Refund", b"second", version="v9")
        assert again == Scheduled("f1", False)
        flow = await log.get_flow("f1")
        assert (flow.flow_type, flow.args, flow.version) == ("Order", b"first", None)
        assert len(await log.list_flows()) == 1
    store.run(body)


# -- claim ---------------------------------------------------------------------------------------

def test_claim_leases_flow_to_worker(store):
    async def body(log):
        await log.schedule_flow("f1", "Order", b"a")
        before = time.time()
        claims = await log.claim("w1", 10, LEASE)
        after = time.time()
        assert ids(claims) == ["f1"]
        flow = claims[0].flow
        assert flow.status == FlowStatus.RUNNING
        assert flow.epoch == 1
        assert flow.owner == "w1"
        assert before + LEASE <= flow.lease_expires <= after + LEASE
        assert claims[0].steps == ()
        assert await log.get_flow("f1") == flow
        assert await log.claim("w2", 10, LEASE) == []  # a live lease is not claimable
    store.run(body)


def test_claim_respects_limit_and_never_returns_a_flow_twice(store):
    async def body(log):
        for i in range(5):
            await log.schedule_flow(f"f{i}", "Order", b"a")
        first = await log.claim("w1", 3, LEASE)
        second = await log.claim("w2", 10, LEASE)
        assert len(first) == 3
        assert len(second) == 2
        assert set(ids(first)).isdisjoint(ids(second))
        assert set(ids(first)) | set(ids(second)) == {f"f{i}" for i in range(5)}
        assert all(c.flow.owner == "w2" for c in second)
        assert await log.claim("w3", 10, LEASE) == []
    store.run(body)


def test_concurrent_claims_never_share_a_flow(store):
    async def body(log):
        for i in range(6):
            await log.schedule_flow(f"f{i}", "Order", b"a")
        results = await asyncio.gather(*(log.claim(f"w{i}", 1, LEASE) for i in range(10)))
        claimed = [flow_id for claims in results for flow_id in ids(claims)]
        assert sorted(claimed) == [f"f{i}" for i in range(6)]
    store.run(body)


def test_claim_takes_the_earliest_ready_flow_first(store):
    async def body(log):
        now = time.time()
        await log.schedule_flow("late", "Order", b"a", ready_at=now - 1)
        await log.schedule_flow("early", "Order", b"a", ready_at=now - 100)
        assert ids(await log.claim("w1", 1, LEASE)) == ["early"]
        assert ids(await log.claim("w1", 1, LEASE)) == ["late"]
    store.run(body)


def test_claim_filters_by_flow_types(store):
    async def body(log):
        await log.schedule_flow("o1", "Order", b"a")
        await log.schedule_flow("r1", "Refund", b"a")
        await log.schedule_flow("s1", "Ship", b"a")
        assert ids(await log.claim("w1", 10, LEASE, flow_types=("Refund",))) == ["r1"]
        assert sorted(ids(await log.claim("w1", 10, LEASE, flow_types=("Order", "Ship")))) == ["o1", "s1"]
        assert await log.claim("w1", 10, LEASE, flow_types=("Refund", "Order", "Ship")) == []
    store.run(body)


def test_claim_by_flow_id_claims_only_that_flow(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        await log.schedule_flow("b", "Order", b"b")
        claims = await log.claim("w1", 10, LEASE, flow_id="b")
        assert ids(claims) == ["b"]
        assert claims[0].flow.owner == "w1" and claims[0].flow.epoch == 1
        assert (await log.get_flow("a")).status == FlowStatus.PENDING
    store.run(body)


def test_claim_by_flow_id_on_live_lease_is_busy_unless_stolen(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        await claim_one(log, "a", "w1")
        with pytest.raises(FlowBusyError) as info:
            await log.claim("w2", 1, LEASE, flow_id="a")
        assert info.value.flow_id == "a"
        (busy,) = await log.execute([ClaimFlows("w2", "req-busy", 1, LEASE, flow_id="a")])
        assert isinstance(busy, FlowBusyError)
        flow = await log.get_flow("a")
        assert (flow.owner, flow.epoch) == ("w1", 1)

        (stolen,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        assert stolen.flow.flow_id == "a"
        assert (stolen.flow.owner, stolen.flow.epoch, stolen.flow.status) == ("w2", 2, FlowStatus.RUNNING)
        assert await log.get_flow("a") == stolen.flow
    store.run(body)


def test_claim_by_flow_id_of_finished_flow_returns_nothing(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.finish_flow("a", claim.flow.epoch, FlowStatus.COMPLETE, result=b"done")
        assert await log.claim("w2", 1, LEASE, flow_id="a") == []
        assert await log.claim("w2", 1, LEASE, flow_id="a", steal=True) == []
        flow = await log.get_flow("a")
        assert (flow.status, flow.epoch, flow.owner) == (FlowStatus.COMPLETE, 1, None)
    store.run(body)


def test_claim_by_unknown_flow_id_is_not_found(store):
    async def body(log):
        with pytest.raises(FlowNotFoundError) as info:
            await log.claim("w1", 1, LEASE, flow_id="ghost")
        assert info.value.flow_id == "ghost"
        (result,) = await log.execute([ClaimFlows("w1", "req-ghost", 1, LEASE, flow_id="ghost")])
        assert isinstance(result, FlowNotFoundError)
    store.run(body)


def test_claim_by_flow_id_wakes_a_suspended_flow(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.suspend_flow("a", claim.flow.epoch, None)
        assert await log.claim("w1", 10, LEASE) == []
        woken = await claim_one(log, "a", "w2")
        assert (woken.flow.status, woken.flow.owner, woken.flow.epoch) == (FlowStatus.RUNNING, "w2", 2)
    store.run(body)


def test_resent_claim_returns_the_same_claims_and_claims_nothing_new(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        command = ClaimFlows("w1", "req-1", 1, LEASE)
        (first,) = await log.execute([command])
        assert ids(first) == ["a"]
        await log.schedule_flow("b", "Order", b"b")
        (again,) = await log.execute([command])
        assert ids(again) == ["a"]
        assert again[0].flow.epoch == first[0].flow.epoch == 1
        assert (await log.get_flow("a")).epoch == 1
        assert (await log.get_flow("b")).status == FlowStatus.PENDING
        # a new request id is a new claim
        (fresh,) = await log.execute([ClaimFlows("w1", "req-2", 1, LEASE)])
        assert ids(fresh) == ["b"]
    store.run(body)


def test_resent_claim_that_got_nothing_still_claims_nothing(store):
    async def body(log):
        command = ClaimFlows("w1", "req-1", 10, LEASE)
        assert await log.execute([command]) == [[]]
        await log.schedule_flow("a", "Order", b"a")
        # the re-send answers the first request again; claiming "a" now would lease a flow the
        # worker never hears of (it already has its answer to req-1)
        assert await log.execute([command]) == [[]]
        assert (await log.get_flow("a")).status == FlowStatus.PENDING
        (fresh,) = await log.execute([ClaimFlows("w1", "req-2", 10, LEASE)])
        assert ids(fresh) == ["a"]
    store.run(body)


def test_resent_claim_after_its_flow_finished_claims_nothing_new(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        command = ClaimFlows("w1", "req-1", 1, LEASE)
        (first,) = await log.execute([command])
        await log.finish_flow("a", first[0].flow.epoch, FlowStatus.COMPLETE, result=b"ok")
        await log.schedule_flow("b", "Order", b"b")
        assert await log.execute([command]) == [[]]
        assert (await log.get_flow("b")).status == FlowStatus.PENDING
    store.run(body)


def test_expired_lease_is_claimable_by_another_worker(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        (first,) = await log.claim("w1", 1, 0.05)
        (second,) = await poll_claim(log, "w2")
        assert second.flow.flow_id == "a"
        assert second.flow.owner == "w2"
        assert second.flow.epoch == first.flow.epoch + 1
        with pytest.raises(FencedError):
            await log.append_step("a", first.flow.epoch, step(0))
    store.run(body)


def test_flow_is_not_claimable_before_ready_at(store):
    async def body(log):
        ready_at = time.time() + 0.3
        await log.schedule_flow("later", "Order", b"a", ready_at=ready_at)
        await log.schedule_flow("much-later", "Order", b"a", ready_at=time.time() + 3600)
        assert await log.claim("w1", 10, LEASE) == []
        assert (await log.count_flows())["due"] == 0
        claims = await poll_claim(log, "w1")
        assert time.time() >= ready_at
        assert ids(claims) == ["later"]
        assert (await log.get_flow("much-later")).status == FlowStatus.PENDING
    store.run(body)


def test_next_due_is_the_earliest_time_a_claim_of_the_types_finds_work(store):
    async def body(log):
        assert await log.next_due() is None
        now = time.time()
        await log.schedule_flow("order", "Order", b"a", ready_at=now + 100)
        await log.schedule_flow("refund", "Refund", b"a", ready_at=now + 50)
        assert await log.next_due() == pytest.approx(now + 50, abs=0.01)
        assert await log.next_due(("Order", "Ship")) == pytest.approx(now + 100, abs=0.01)
        assert await log.next_due(("Ship",)) is None
        claim = await claim_one(log, "refund")  # running: due when its lease lapses
        assert await log.next_due(("Refund",)) == pytest.approx(claim.flow.lease_expires, abs=0.01)
        await log.suspend_flow("refund", claim.flow.epoch, None, waiting_on="signal:go")
        assert await log.next_due(("Refund",)) is None  # it waits for a signal, not for time
        await log.schedule_flow("now", "Refund", b"a")
        assert await log.next_due(("Refund",)) <= time.time()
    store.run(body)


# -- append_step ---------------------------------------------------------------------------------

def test_appended_steps_are_loaded_and_returned_by_the_next_claim(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        before = time.time()
        await log.append_step("a", claim.flow.epoch, step(1, b"one"))
        await log.append_step("a", claim.flow.epoch, step(0, b"zero", name="first"))
        steps = await log.load_steps("a")
        assert [without_time(s) for s in steps] == [step(0, b"zero", name="first"), step(1, b"one")]
        assert all(s.completed_at >= before for s in steps)
        assert await log.load_steps("ghost") == []

        assert await log.release_worker("w1") == 1
        again = await claim_one(log, "a", "w2")
        assert again.flow.epoch == 2
        assert [without_time(s) for s in again.steps] == [step(0, b"zero", name="first"), step(1, b"one")]
    store.run(body)


def test_duplicate_append_of_complete_step_keeps_the_first(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.append_step("a", claim.flow.epoch, step(0, b"first"))
        await log.append_step("a", claim.flow.epoch, step(0, b"second", name="other"))
        (only,) = await log.load_steps("a")
        assert without_time(only) == step(0, b"first")
    store.run(body)


def test_failed_step_is_overwritten_by_a_later_complete(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        failure = Failure.from_exception(ValueError("boom"))
        await log.append_step("a", claim.flow.epoch, step(0, None, status=StepStatus.FAILED, error=failure))
        (failed,) = await log.load_steps("a")
        assert failed.status == StepStatus.FAILED
        assert (failed.error.type, failed.error.message) == (failure.type, failure.message)
        await log.append_step("a", claim.flow.epoch, step(0, b"ok", attempt=2))
        (done,) = await log.load_steps("a")
        assert without_time(done) == step(0, b"ok", attempt=2)
    store.run(body)


def test_append_with_stale_epoch_is_fenced(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        old = await claim_one(log, "a", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        with pytest.raises(FencedError) as info:
            await log.append_step("a", old.flow.epoch, step(0, b"stale"))
        assert (info.value.flow_id, info.value.epoch) == ("a", old.flow.epoch)
        (refused,) = await log.execute([AppendStep("a", old.flow.epoch, step(0, b"stale"))])
        assert isinstance(refused, FencedError)
        assert await log.load_steps("a") == []
        await log.append_step("a", new.flow.epoch, step(0, b"fresh"))
        (only,) = await log.load_steps("a")
        assert only.result == b"fresh"
        # a step the old owner re-sends after the new owner recorded it is still refused
        with pytest.raises(FencedError):
            await log.append_step("a", old.flow.epoch, step(0, b"fresh"))
    store.run(body)


def test_append_to_unknown_flow_is_not_found(store):
    async def body(log):
        with pytest.raises(FlowNotFoundError):
            await log.append_step("ghost", 1, step(0))
        (result,) = await log.execute([AppendStep("ghost", 1, step(0))])
        assert isinstance(result, FlowNotFoundError)
        assert await log.load_steps("ghost") == []
    store.run(body)


def test_append_to_a_flow_that_is_not_running_is_fenced(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        with pytest.raises(FencedError):
            await log.append_step("a", 0, step(0))  # PENDING, never claimed
        assert await log.load_steps("a") == []
    store.run(body)


def test_resent_append_after_finish_is_a_no_op_but_new_steps_are_refused(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        epoch = claim.flow.epoch
        await log.append_step("a", epoch, step(0, b"zero"))
        await log.finish_flow("a", epoch, FlowStatus.COMPLETE, result=b"done")
        await log.append_step("a", epoch, step(0, b"zero"))  # a re-send: accepted, changes nothing
        with pytest.raises(FencedError):
            await log.append_step("a", epoch, step(1, b"one"))
        assert [without_time(s) for s in await log.load_steps("a")] == [step(0, b"zero")]
        assert (await log.get_flow("a")).status == FlowStatus.COMPLETE
    store.run(body)


# -- finish_flow ---------------------------------------------------------------------------------

def test_finish_complete_with_result_and_resend_is_a_no_op(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.finish_flow("a", claim.flow.epoch, FlowStatus.COMPLETE, result=b"done")
        flow = await log.get_flow("a")
        assert (flow.status, flow.result, flow.error) == (FlowStatus.COMPLETE, b"done", None)
        assert (flow.owner, flow.lease_expires, flow.epoch) == (None, None, claim.flow.epoch)
        await log.finish_flow("a", claim.flow.epoch, FlowStatus.COMPLETE, result=b"done")
        assert await log.get_flow("a") == flow
        # a different outcome at the same epoch is refused: the first one stands
        with pytest.raises(FencedError):
            await log.finish_flow("a", claim.flow.epoch, FlowStatus.FAILED,
                                  error=Failure.from_exception(ValueError("late")))
        assert await log.get_flow("a") == flow
        assert await log.claim("w2", 10, LEASE) == []
    store.run(body)


def test_finish_with_stale_epoch_is_refused(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        old = await claim_one(log, "a", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        with pytest.raises(FencedError):
            await log.finish_flow("a", old.flow.epoch, FlowStatus.COMPLETE, result=b"stale")
        (refused,) = await log.execute([FinishFlow("a", old.flow.epoch, FlowStatus.COMPLETE, b"stale")])
        assert isinstance(refused, FencedError)
        assert await log.get_flow("a") == new.flow
    store.run(body)


def test_finish_a_flow_that_is_not_running_is_refused(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        with pytest.raises(FencedError):
            await log.finish_flow("a", 0, FlowStatus.COMPLETE, result=b"x")
        assert (await log.get_flow("a")).status == FlowStatus.PENDING
    store.run(body)


def test_finish_failed_round_trips_the_failure(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        failure = Failure.from_exception(ValueError("x"))
        await log.finish_flow("a", claim.flow.epoch, FlowStatus.FAILED, error=failure)
        flow = await log.get_flow("a")
        assert flow.status == FlowStatus.FAILED
        assert flow.result is None
        assert isinstance(flow.error, Failure)
        assert (flow.error.type, flow.error.message) == ("builtins:ValueError", "x")
        assert (flow.error.retryable, flow.error.args) == (failure.retryable, failure.args)
        rebuilt = flow.error.to_exception()
        assert type(rebuilt) is ValueError and rebuilt.args == ("x",)
    store.run(body)


def test_finish_cancelled(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.finish_flow("a", claim.flow.epoch, FlowStatus.CANCELLED)
        record = await log.wait_for_completion("a", timeout=5)
        assert record.status == FlowStatus.CANCELLED
    store.run(body)


def test_finish_unknown_flow_is_not_found(store):
    async def body(log):
        with pytest.raises(FlowNotFoundError):
            await log.finish_flow("ghost", 1, FlowStatus.COMPLETE, result=b"x")
        (result,) = await log.execute([FinishFlow("ghost", 1, FlowStatus.COMPLETE, b"x")])
        assert isinstance(result, FlowNotFoundError)
        assert await log.get_flow("ghost") is None
    store.run(body)


def test_wait_for_completion_returns_the_finished_record(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")

        async def finish_soon():
            await asyncio.sleep(0.05)
            await log.finish_flow("a", claim.flow.epoch, FlowStatus.COMPLETE, result=b"done")

        finisher = asyncio.create_task(finish_soon())
        record = await log.wait_for_completion("a", timeout=10)
        await finisher
        assert (record.status, record.result) == (FlowStatus.COMPLETE, b"done")
        assert record == await log.get_flow("a")
    store.run(body)


def test_wait_for_completion_times_out_on_a_live_flow(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        with pytest.raises(TimeoutExpired):
            await log.wait_for_completion("a", timeout=0.1)
        await claim_one(log, "a")
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            await log.wait_for_completion("a", timeout=0.1)
        assert time.monotonic() - started >= 0.1
    store.run(body)


def test_wait_for_completion_of_unknown_flow_is_not_found(store):
    async def body(log):
        with pytest.raises(FlowNotFoundError):
            await log.wait_for_completion("ghost", timeout=1)
    store.run(body)


# -- suspend_flow --------------------------------------------------------------------------------

def test_suspend_until_woken_is_never_claimable(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        await log.suspend_flow("a", claim.flow.epoch, None)
        flow = await log.get_flow("a")
        assert flow.status == FlowStatus.SUSPENDED
        assert (flow.owner, flow.lease_expires, flow.ready_at) == (None, None, None)
        assert flow.epoch == claim.flow.epoch
        await log.suspend_flow("a", claim.flow.epoch, None)  # a re-send is a no-op
        assert await log.get_flow("a") == flow
        assert await log.claim("w1", 10, LEASE) == []
        counts = await log.count_flows()
        assert (counts.get(FlowStatus.SUSPENDED), counts["due"]) == (1, 0)
    store.run(body)


def test_suspend_with_past_ready_at_is_claimable_again_as_the_next_attempt(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        claim = await claim_one(log, "a")
        failure = Failure.from_exception(ValueError("try again"))
        ready_at = time.time() - 1
        await log.suspend_flow("a", claim.flow.epoch, ready_at, attempt=2, error=failure)
        flow = await log.get_flow("a")
        assert (flow.status, flow.owner, flow.attempt) == (FlowStatus.SUSPENDED, None, 2)
        assert flow.ready_at == pytest.approx(ready_at)
        assert (flow.error.type, flow.error.message) == ("builtins:ValueError", "try again")

        (again,) = await log.claim("w2", 10, LEASE)
        assert again.flow.flow_id == "a"
        assert (again.flow.status, again.flow.owner) == (FlowStatus.RUNNING, "w2")
        assert (again.flow.epoch, again.flow.attempt) == (claim.flow.epoch + 1, 2)

        # suspended again without an attempt: the attempt stays
        await log.suspend_flow("a", again.flow.epoch, time.time() - 1)
        assert (await log.get_flow("a")).attempt == 2
    store.run(body)


def test_suspend_with_stale_epoch_is_refused(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        old = await claim_one(log, "a", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        with pytest.raises(FencedError):
            await log.suspend_flow("a", old.flow.epoch, None)
        (refused,) = await log.execute([SuspendFlow("a", old.flow.epoch, None)])
        assert isinstance(refused, FencedError)
        assert await log.get_flow("a") == new.flow
        with pytest.raises(FlowNotFoundError):
            await log.suspend_flow("ghost", 1, None)
    store.run(body)


# -- renew_leases / release_worker ---------------------------------------------------------------

def test_renew_leases_extends_only_that_workers_running_flows(store):
    async def body(log):
        for flow_id in ("a", "b", "c"):
            await log.schedule_flow(flow_id, "Order", b"x")
        await claim_one(log, "a", "w1", lease=5)
        other = await claim_one(log, "b", "w2", lease=5)
        parked = await claim_one(log, "c", "w1", lease=5)
        await log.suspend_flow("c", parked.flow.epoch, None)

        before = time.time()
        assert await log.renew_leases("w1", 100) == 1
        after = time.time()
        a = await log.get_flow("a")
        assert before + 100 <= a.lease_expires <= after + 100
        assert await log.get_flow("b") == other.flow
        c = await log.get_flow("c")
        assert (c.status, c.lease_expires) == (FlowStatus.SUSPENDED, None)
        assert await log.renew_leases("nobody", 100) == 0
    store.run(body)


def test_release_worker_returns_its_running_flows_to_pending(store):
    async def body(log):
        for flow_id in ("a", "b", "c"):
            await log.schedule_flow(flow_id, "Order", b"x")
        await claim_one(log, "a", "w1")
        await claim_one(log, "b", "w1")
        kept = await claim_one(log, "c", "w2")

        assert await log.release_worker("w1") == 2
        for flow_id in ("a", "b"):
            flow = await log.get_flow(flow_id)
            assert (flow.status, flow.owner, flow.lease_expires) == (FlowStatus.PENDING, None, None)
        assert await log.get_flow("c") == kept.flow
        assert (await log.count_flows())["due"] == 2

        claims = await log.claim("w3", 10, LEASE)  # claimable at once, no waiting for leases
        assert sorted(ids(claims)) == ["a", "b"]
        assert all(c.flow.epoch == 2 and c.flow.owner == "w3" for c in claims)
        assert await log.release_worker("w1") == 0
    store.run(body)


# -- list_flows / count_flows --------------------------------------------------------------------

def test_list_flows_oldest_first_with_status_filter_and_limit(store):
    async def body(log):
        for i in range(4):
            await log.schedule_flow(f"f{i}", "Order", b"x")
        await claim_one(log, "f1")
        assert [f.flow_id for f in await log.list_flows()] == ["f0", "f1", "f2", "f3"]
        assert [f.flow_id for f in await log.list_flows(limit=2)] == ["f0", "f1"]
        assert [f.flow_id for f in await log.list_flows(FlowStatus.PENDING)] == ["f0", "f2", "f3"]
        assert [f.flow_id for f in await log.list_flows(FlowStatus.PENDING, limit=1)] == ["f0"]
        running = await log.list_flows(FlowStatus.RUNNING)
        assert [f.flow_id for f in running] == ["f1"]
        assert running[0] == await log.get_flow("f1")
        assert await log.list_flows(FlowStatus.COMPLETE) == []
    store.run(body)


def test_list_flows_keeps_schedule_order_within_one_batch(store):
    async def body(log):
        names = ["m", "c", "x", "a"]
        await log.execute([ScheduleFlow(n, "Order", b"x") for n in names])
        assert [f.flow_id for f in await log.list_flows()] == names
    store.run(body)


def test_count_flows_per_status_and_due(store):
    async def body(log):
        now = time.time()
        for flow_id in ("live", "done", "pending", "future", "retry", "parked", "expired"):
            ready_at = now + 3600 if flow_id == "future" else None
            await log.schedule_flow(flow_id, "Order", b"x", ready_at=ready_at)
        await claim_one(log, "live")
        done = await claim_one(log, "done")
        await log.finish_flow("done", done.flow.epoch, FlowStatus.COMPLETE, result=b"r")
        retry = await claim_one(log, "retry")
        await log.suspend_flow("retry", retry.flow.epoch, now - 1, attempt=2)
        parked = await claim_one(log, "parked")
        await log.suspend_flow("parked", parked.flow.epoch, None)
        await claim_one(log, "expired", lease=0)  # its lease ends as it is taken

        counts = await log.count_flows()
        assert set(counts) <= {*FlowStatus, "due"}
        expected = {FlowStatus.RUNNING: 2, FlowStatus.COMPLETE: 1, FlowStatus.PENDING: 2,
                    FlowStatus.SUSPENDED: 2, FlowStatus.FAILED: 0, FlowStatus.CANCELLED: 0}
        assert {s: counts.get(s, 0) for s in FlowStatus} == expected
        assert counts["due"] == 3  # pending, retry, expired
        capped = await log.count_flows(limit=1)  # enough to tell idle from busy, and cheap
        assert {s: capped.get(s, 0) for s in FlowStatus} == {s: min(n, 1) for s, n in expected.items()}
        assert capped["due"] == 1
        assert sorted(ids(await log.claim("w9", 10, LEASE))) == ["expired", "pending", "retry"]
        assert (await log.count_flows())["due"] == 0
    store.run(body)


# -- batches -------------------------------------------------------------------------------------

def test_batch_applies_valid_commands_and_returns_refusals_in_place(store):
    async def body(log):
        await log.schedule_flow("a", "Order", b"a")
        old = await claim_one(log, "a", "w1")
        (new,) = await log.claim("w2", 1, LEASE, flow_id="a", steal=True)
        commands = [
            AppendStep("a", old.flow.epoch, step(0, b"stale")),
            AppendStep("a", new.flow.epoch, step(0, b"fresh")),
            AppendStep("ghost", 1, step(0)),
            AppendStep("a", new.flow.epoch, step(1, b"next")),
            LoadSteps("a"),
            GetFlow("a"),
        ]
        results = await log.execute(commands)
        assert len(results) == len(commands)
        assert isinstance(results[0], FencedError) and results[0].epoch == old.flow.epoch
        assert results[1] is None
        assert isinstance(results[2], FlowNotFoundError)
        assert results[3] is None
        assert [without_time(s) for s in results[4]] == [step(0, b"fresh"), step(1, b"next")]
        assert results[5] == new.flow
        assert [without_time(s) for s in await log.load_steps("a")] == [step(0, b"fresh"), step(1, b"next")]
    store.run(body)


def test_batch_commands_apply_in_order(store):
    async def body(log):
        scheduled, claims, count = await log.execute(
            [ScheduleFlow("a", "Order", b"a"), ClaimFlows("w1", "req-1", 10, LEASE), CountFlows()])
        assert scheduled == Scheduled("a", True)
        assert ids(claims) == ["a"]
        assert count.get(FlowStatus.RUNNING) == 1 and count.get(FlowStatus.PENDING, 0) == 0
    store.run(body)


def test_a_command_with_bad_content_fails_alone_in_its_place(store):
    async def body(log):
        results = await log.execute([ScheduleFlow("a", "Order", b"a"), GetFlow([1, 2]),
                                     ScheduleFlow("b", "Order", b"b")])
        assert isinstance(results[1], InvalidCommandError), results[1]
        assert results[1].command == "GetFlow" and "GetFlow" in str(results[1])
        assert results[0] == Scheduled("a", True) and results[2] == Scheduled("b", True)
        with pytest.raises(InvalidCommandError):
            await log.get_flow([1, 2])
        # callers sharing a transaction (group commit) are not failed by another's bad command
        bad, good = await asyncio.gather(log.execute([GetFlow({"x": 1}), ScheduleFlow("c", "Order", b"c")]),
                                         log.execute([ScheduleFlow("d", "Order", b"d")]))
        assert isinstance(bad[0], InvalidCommandError) and bad[1] == Scheduled("c", True)
        assert good == [Scheduled("d", True)]
        assert [f.flow_id for f in await log.list_flows()] == ["a", "b", "c", "d"]
    store.run(body)
