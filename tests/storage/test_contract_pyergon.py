"""The record commands behind PyErgon's store API, and that API, with the same results on every
store (memory, SQLite, Redis)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ergon_actors.core import InvocationStatus, ScheduledFlow, TaskStatus
from ergon_actors.storage import LogBase
from ergon_actors.storage.commands import PutRecord, ResetStore, ScanRecords

pytestmark = pytest.mark.timeout(60)


def test_records_are_set_scanned_by_prefix_in_key_order_and_deleted(store):
    async def body(log: LogBase) -> None:
        written = await log.execute([PutRecord("b/2", b"two"), PutRecord("a/1", b"\x00one"),
                                     PutRecord("b/1", b"one"), PutRecord("bz", b"other")])
        assert written == [True, True, True, True]
        assert await log.execute([ScanRecords("b/")]) == [[["b/1", b"one"], ["b/2", b"two"]]]
        assert await log.execute([ScanRecords("")]) == [[["a/1", b"\x00one"], ["b/1", b"one"],
                                                         ["b/2", b"two"], ["bz", b"other"]]]
        await log.execute([PutRecord("b/1", None)])
        assert await log.execute([ScanRecords("b")]) == [[["b/2", b"two"], ["bz", b"other"]]]
    store.run(body)


def test_a_checked_record_write_applies_only_over_the_expected_value(store):
    async def body(log: LogBase) -> None:
        results = await log.execute([
            PutRecord("k", b"v1", True, None),  # absent: written
            PutRecord("k", b"v2", True, None),  # present now: refused
            PutRecord("k", b"v2", True, b"v0"),  # not v0: refused
            PutRecord("k", b"v2", True, b"v1"),  # written
            PutRecord("k", None, True, b"v1"),  # v2 now: not deleted
        ])
        assert results == [True, False, False, True, False]
        assert await log.execute([ScanRecords("k")]) == [[["k", b"v2"]]]
    store.run(body)


def test_reset_deletes_flows_steps_signals_and_records(store):
    async def body(log: LogBase) -> None:
        await log.schedule_flow("f1", "T", b"args")
        await log.send_signal("go", b"p")
        await log.execute([PutRecord("inv/f1/0", b"x")])
        await log.execute([ResetStore()])
        assert await log.get_flow("f1") is None
        assert await log.list_flows() == []
        assert await log.execute([ScanRecords("")]) == [[]]
        assert await log.send_signal("go", b"p")  # the name is free again
        await log.schedule_flow("f2", "T", b"args")  # and the store works on
        assert [f.flow_id for f in await log.list_flows()] == ["f2"]
    store.run(body)


def test_pyergon_invocations_timers_and_suspension_results(store):
    async def body(log: LogBase) -> None:
        inv = await log.log_invocation_start("f1", 3, "Order", "charge", b"params", 42)
        assert (inv.status, inv.attempts) == (InvocationStatus.PENDING, 1)
        past = datetime.now() - timedelta(seconds=5)
        await log.log_timer("f1", 3, past, "t")
        assert (await log.get_invocation("f1", 3)).status is InvocationStatus.WAITING_FOR_TIMER
        assert [(t.flow_id, t.step, t.timer_name) for t in await log.get_expired_timers(datetime.now())] == \
            [("f1", 3, "t")]
        assert await log.claim_timer("f1", 3) is True
        assert await log.claim_timer("f1", 3) is False  # taken once
        await log.store_suspension_result("f1", 3, "t", b"fired")
        assert await log.get_suspension_result("f1", 3, "t") == b"fired"
        await log.remove_suspension_result("f1", 3, "t")
        assert await log.get_suspension_result("f1", 3, "t") is None
        done = await log.log_invocation_completion("f1", 3, b"result")
        assert done.status is InvocationStatus.COMPLETE and done.return_value == b"result"
    store.run(body)


def test_pyergon_queue_enqueue_dequeue_complete_and_reset(store):
    async def body(log: LogBase) -> None:
        now = datetime.now()
        task = ScheduledFlow("task-1", "flow-1", "Order", b"\x80", TaskStatus.PENDING, created_at=now,
                             updated_at=now)
        assert await log.enqueue_flow(task) == "task-1"
        taken = await log.dequeue_flow("w1")
        assert (taken.task_id, taken.flow_id, taken.status, taken.locked_by) == \
            ("task-1", "flow-1", TaskStatus.RUNNING, "w1")
        await log.complete_flow("task-1", TaskStatus.FAILED, "no stock")
        ended = await log.get_scheduled_flow("task-1")
        assert (ended.status, ended.error_message) == (TaskStatus.FAILED, "no stock")
        await log.reset()
        assert await log.get_scheduled_flow("task-1") is None
    store.run(body)
