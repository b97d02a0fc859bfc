"""The contract of cron schedules and retention: PutSchedule ... PruneFlows, on every store."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from ergon_actors.core import Failure, FlowStatus
from ergon_actors.errors import InvalidCommandError, ScheduleNotFoundError
from ergon_actors.storage.commands import FireSchedule, PruneFlows, PutSchedule, QueryFlows, ScheduleFlow
from ergon_actors.storage.schedules import fire_due, prune_all, tick_id

from .test_contract import claim_one, step

pytestmark = pytest.mark.timeout(60)

EVERY_SECOND = "* * * * * *"


async def finish(log, flow_id: str, status: str = FlowStatus.COMPLETE) -> None:
    claim = await claim_one(log, flow_id)
    await log.append_step(flow_id, claim.flow.epoch, step(0))
    error = Failure("ValueError", "bad") if status == FlowStatus.FAILED else None
    await log.finish_flow(flow_id, claim.flow.epoch, status, result=b"ok", error=error)


async def after(moment: float) -> float:
    """The time once the clock has passed `moment` (the stores stamp with the same clock)."""
    while time.time() <= moment:
        await asyncio.sleep(0.001)
    return time.time()


# -- schedules -----------------------------------------------------------------------------------

def test_put_schedule_creates_replaces_and_keeps_the_same(store):
    async def body(log):
        first = await log.put_schedule("nightly", "0 3 * * *", "Report", b"a")
        assert (first.name, first.cron, first.flow_type, first.args, first.missed) == (
            "nightly", "0 3 * * *", "Report", b"a", "once")
        assert (first.paused, first.revision) == (False, 1)
        assert abs(first.last_tick - time.time()) < 5 and first.last_tick == first.created_at
        assert await log.put_schedule("nightly", "0 3 * * *", "Report", b"a") == first
        second = await log.put_schedule("nightly", "0 4 * * *", "Report", b"b", missed="all")
        assert (second.cron, second.args, second.missed, second.revision) == ("0 4 * * *", b"b", "all", 2)
        assert (second.last_tick, second.created_at) == (first.last_tick, first.created_at)
        await log.put_schedule("hourly", "0 * * * *", "Report", b"")
        assert [s.name for s in await log.list_schedules()] == ["hourly", "nightly"]

    store.run(body)


def test_bad_schedules_are_refused_and_nothing_is_kept(store):
    async def body(log):
        bad = [PutSchedule("x", "61 * * * *", "T", b""), PutSchedule("x", "* * *", "T", b""),
               PutSchedule("x", "* * * * *", "T", b"", missed="sometimes"), PutSchedule("", "* * * * *", "T", b"")]
        for result in await log.execute(bad):
            assert isinstance(result, InvalidCommandError)
        assert await log.list_schedules() == []

    store.run(body)


def test_pause_resume_delete(store):
    async def body(log):
        created = await log.put_schedule("s", EVERY_SECOND, "T", b"")
        paused = await log.change_schedule("s", "pause")
        assert paused.paused and paused.last_tick == created.last_tick
        assert await log.change_schedule("s", "pause") == paused
        now = await after(created.last_tick)
        resumed = await log.change_schedule("s", "resume")
        assert not resumed.paused and resumed.last_tick >= now  # ticks while paused never fire
        assert await log.change_schedule("s", "resume") == resumed
        assert await log.change_schedule("s", "delete") is None
        assert await log.list_schedules() == []
        for action in ("pause", "resume", "delete"):
            with pytest.raises(ScheduleNotFoundError) as caught:
                await log.change_schedule("s", action)
            assert caught.value.name == "s"

    store.run(body)


def test_fire_starts_each_tick_once_however_often_it_is_sent(store):
    async def body(log):
        s = await log.put_schedule("s", EVERY_SECOND, "T", b"args")
        t1, t2 = s.last_tick + 1, s.last_tick + 2
        fire = FireSchedule("s", 1, (t1, t2), (tick_id("s", t1), tick_id("s", t2)), t2)
        assert await log.execute([fire, fire]) == [[tick_id("s", t1), tick_id("s", t2)], []]
        assert await log.execute([fire]) == [[]]
        for flow_id in (tick_id("s", t1), tick_id("s", t2)):
            flow = await log.get_flow(flow_id)
            assert (flow.flow_type, flow.args, flow.status) == ("T", b"args", FlowStatus.PENDING)
        assert (await log.list_schedules())[0].last_tick == t2
        # a tick at or before the last one never fires, also under a new flow id
        assert await log.execute([FireSchedule("s", 1, (t2,), ("other",), t2)]) == [[]]
        assert await log.get_flow("other") is None

    store.run(body)


def test_fire_of_a_paused_replaced_or_deleted_schedule_does_nothing(store):
    async def body(log):
        s = await log.put_schedule("s", EVERY_SECOND, "T", b"")
        tick = s.last_tick + 1
        fire = FireSchedule("s", 1, (tick,), ("f",), tick)
        await log.change_schedule("s", "pause")
        assert await log.execute([fire]) == [[]]
        await log.change_schedule("s", "resume")
        await log.put_schedule("s", "*/2 * * * * *", "T", b"")  # revision 2: ticks of revision 1 are stale
        assert await log.execute([fire]) == [[]]
        await log.change_schedule("s", "delete")
        assert await log.execute([replace(fire, revision=2)]) == [[]]
        assert await log.get_flow("f") is None

    store.run(body)


def test_fire_due_follows_the_missed_policy(store):
    """Nothing ran for 200 s: skip starts only the ticks of the last 60 s, once adds the latest
    missed tick, all starts every tick."""
    async def body(log):
        schedules = {}
        for policy in ("skip", "once", "all"):
            schedules[policy] = await log.put_schedule(policy, "*/10 * * * * *", "T", b"", missed=policy)
        start = max(s.last_tick for s in schedules.values())
        now = start + 200
        created, next_at = await fire_due(log.execute, now=now, missed_after=60)
        by_policy = {p: sorted(i for i in created if i.startswith(p + "@")) for p in schedules}
        recent = [t for t in range(int(now - 59), int(now) + 1) if t % 10 == 0]
        assert by_policy["skip"] == [tick_id("skip", t) for t in recent]
        latest_missed = max(t for t in range(int(start) + 1, int(now - 60) + 1) if t % 10 == 0)
        assert by_policy["once"] == sorted(tick_id("once", t) for t in [latest_missed, *recent])
        every = [t for t in range(int(schedules["all"].last_tick) + 1, int(now) + 1) if t % 10 == 0]
        assert by_policy["all"] == [tick_id("all", t) for t in every]
        assert next_at == (int(now) // 10 + 1) * 10
        again, _ = await fire_due(log.execute, now=now, missed_after=60)  # every tick is done
        assert again == []
        counts = await log.count_flows()
        assert counts[FlowStatus.PENDING] == len(created)

    store.run(body)


# -- retention -----------------------------------------------------------------------------------

def test_prune_deletes_ended_flows_with_their_steps_and_history(store):
    async def body(log):
        for i in range(5):
            await log.schedule_flow(f"done-{i}", "T", b"")
            await finish(log, f"done-{i}")
        await log.schedule_flow("failed", "T", b"")
        await finish(log, "failed", FlowStatus.FAILED)
        await log.schedule_flow("pending", "T", b"")
        await log.schedule_flow("running", "T", b"")
        await claim_one(log, "running")
        await log.schedule_flow("cancelled", "T", b"")
        await log.cancel_flow("cancelled")
        cutoff = await after(time.time())
        assert await log.prune_flows(cutoff, ("COMPLETE",), limit=3) == 3
        assert await log.prune_flows(cutoff, ("COMPLETE",)) == 2
        assert await log.prune_flows(cutoff, ("COMPLETE",)) == 0
        for i in range(5):
            assert await log.get_flow(f"done-{i}") is None
            assert await log.load_steps(f"done-{i}") == []
            assert await log.load_history(f"done-{i}") == []
        assert (await log.get_flow("failed")).status == FlowStatus.FAILED
        assert await log.prune_flows(cutoff) == 2  # failed and cancelled
        counts = await log.count_flows()
        assert {k: v for k, v in counts.items() if v} == {"PENDING": 1, "RUNNING": 1, "due": 1}
        assert sorted(f.flow_id for f in (await log.query_flows(QueryFlows())).flows) == ["pending", "running"]
        # the id of a pruned flow is free again
        assert (await log.schedule_flow("done-0", "T", b"")).created

    store.run(body)


def test_prune_keeps_flows_that_ended_after_the_cutoff_and_children_of_live_parents(store):
    async def body(log):
        await log.schedule_flow("old", "T", b"")
        await finish(log, "old")
        await log.schedule_flow("parent", "T", b"")
        parent = await claim_one(log, "parent")
        await log.invoke_child("parent", parent.flow.epoch, step(0), ScheduleFlow("child", "T", b""))
        await finish(log, "child")
        cutoff = await after((await log.get_flow("child")).updated_at)
        await log.schedule_flow("late", "T", b"")
        await finish(log, "late")  # ended after the cutoff
        assert await prune_all(log.execute, cutoff, batch=1) == 1
        assert await log.get_flow("old") is None
        assert (await log.get_flow("child")).status == FlowStatus.COMPLETE  # its parent waits for it
        assert (await log.get_flow("late")).status == FlowStatus.COMPLETE
        parent = await claim_one(log, "parent")  # woken by the child's end
        await log.finish_flow("parent", parent.flow.epoch, FlowStatus.COMPLETE, result=b"")
        assert await prune_all(log.execute, time.time() + 5) == 3
        assert {k: v for k, v in (await log.count_flows()).items() if v} == {}

    store.run(body)


def test_prune_refuses_live_statuses(store):
    async def body(log):
        for statuses in (("PENDING",), ("COMPLETE", "RUNNING"), ()):
            (result,) = await log.execute([PruneFlows(time.time(), statuses)])
            assert isinstance(result, InvalidCommandError)

    store.run(body)


def test_counts_follow_every_change_of_status(store):
    async def body(log):
        for i in range(6):
            await log.schedule_flow(f"f{i}", "T", b"")
        await finish(log, "f0")
        await finish(log, "f1", FlowStatus.FAILED)
        await log.retry_failed("f1")
        await log.cancel_flow("f2")
        await claim_one(log, "f3")
        await log.release_worker("w1")
        await claim_one(log, "f4")
        counts = await log.count_flows()
        scanned: dict[str, int] = {}
        for flow in await log.list_flows():
            scanned[flow.status] = scanned.get(flow.status, 0) + 1
        assert {k: v for k, v in counts.items() if k in FlowStatus.__members__ and v} == scanned
        assert await log.count_flows(limit=1) == {k: min(v, 1) for k, v in counts.items()}

    store.run(body)
