"""PyErgon's names, module paths, outcomes, store API and worker methods, on our stores."""

import asyncio
import importlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from ergon_actors import Completed, Executor, InMemoryExecutionLog, Suspended, Worker, flow, flow_type, step
from ergon_actors.core import Invocation, InvocationStatus, ScheduledFlow, TaskStatus
from ergon_actors.executor.outcome import SuspendReason, is_completed, is_suspended
from ergon_actors.executor.timer import schedule_timer
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)


@dataclass
@flow_type
class Twice:
    value: int

    @step
    async def double(self) -> int:
        return self.value * 2

    @flow
    async def run(self) -> int:
        return await self.double()


@dataclass
@flow_type
class Broken:
    value: int = 0

    @flow
    async def run(self) -> int:
        raise ValueError("no good")


@dataclass
@flow_type
class Sleeper:
    value: int = 0

    @flow
    async def run(self) -> str:
        await schedule_timer(60)
        return "woke"


@pytest.mark.parametrize("module, names", [
    ("ergon_actors.core", ["Invocation", "InvocationStatus", "ScheduledFlow", "TaskStatus", "CallType",
                           "ChildFlowError", "TimerInfo"]),
    ("ergon_actors.models", ["Invocation", "InvocationStatus", "ScheduledFlow", "RetryPolicy", "TimerInfo"]),
    ("ergon_actors.models.invocation", ["Invocation"]),
    ("ergon_actors.models.status", ["InvocationStatus", "TaskStatus"]),
    ("ergon_actors.executor.outcome", ["Completed", "Suspended", "SuspendReason", "FlowOutcome",
                                       "is_completed", "is_suspended"]),
    ("ergon_actors.executor.pending_child", ["PendingChild"]),
    ("ergon_actors.executor.suspension_payload", ["SuspensionPayload"]),
    ("ergon_actors.executor.instance", ["Executor"]),
    ("ergon_actors.executor.worker", ["Worker", "WorkerError", "Registry"]),
    ("ergon_actors", ["Invocation", "InvocationStatus", "Completed", "Suspended", "CallType", "FlowType",
                      "execute_flow", "FlowOutcome", "is_completed", "is_suspended", "SuspensionPayload",
                      "PendingChild", "complete_child_flow", "SchedulerError", "WorkerError", "StepHandle",
                      "DeferredRegistry", "DagSummary", "execute_dag", "dag", "DagExecutionError"]),
    ("ergon_actors.core", ["FlowType", "InvokableFlow", "get_flow_type_id", "RetryPolicy", "RetryableError"]),
    ("ergon_actors.storage", ["RedisExecutionLog", "WorkNotificationSource", "TimerNotificationSource"]),
    ("ergon_actors.storage.base", ["StorageError"]),
    ("ergon_actors.executor", ["execute_flow", "DagSummary", "execute_dag", "SuspensionPayload",
                               "complete_child_flow"]),
    ("ergon_actors.executor.child_completion", ["complete_child_flow"]),
    ("ergon_actors.executor.instance", ["execute_flow"]),
    ("ergon_actors.executor.scheduler", ["Scheduler", "SchedulerError"]),
    ("ergon_actors.executor.timer", ["TimerError", "schedule_timer", "schedule_timer_named"]),
    ("ergon_actors.executor.dag", ["DeferredStep", "DagSummary", "execute_dag", "StepHandle"]),
    ("ergon_actors.executor.dag_runtime", ["dag", "DagExecutionError"]),
    ("ergon_actors.executor.execution", ["check_should_retry", "handle_flow_completion", "handle_flow_error",
                                         "handle_suspended_flow"]),
])
def test_pyergon_names_import_from_its_module_paths(module, names):
    loaded = importlib.import_module(module)
    missing = [n for n in names if not hasattr(loaded, n)]
    assert not missing


def test_executor_returns_completed_with_the_result_or_the_exception(make_store):
    async def main():
        store = await make_store()
        ok = await Executor(Twice(21), store, "ok").run(lambda f: f.run())
        bad = await Executor(Broken(), store, "bad").run()
        again = await Executor(Twice(21), store, "ok").run()  # already finished: from the journal
        await store.close()
        return ok, bad, again
    ok, bad, again = run(main())
    assert isinstance(ok, Completed) and is_completed(ok) and ok.is_success() and ok.result == 42
    assert ok.unwrap() == 42 and ok.is_complete
    assert isinstance(bad, Completed) and bad.is_failure() and isinstance(bad.result, ValueError)
    assert str(bad.result) == "no good" and bad.status == TaskStatus.FAILED
    assert isinstance(again, Completed) and again.result == 42


def test_a_timer_suspends_with_a_timer_reason_at_step_0(make_store):
    async def main():
        store = await make_store()
        outcome = await Executor(Sleeper(), store, "sleepy").run()
        nxt = await store.get_next_timer_fire_time()
        await store.close()
        return outcome, nxt
    outcome, nxt = run(main())
    assert isinstance(outcome, Suspended) and is_suspended(outcome)
    assert outcome.reason == SuspendReason("sleepy", 0) and outcome.reason.is_timer()
    assert nxt is not None and nxt > datetime.now() + timedelta(seconds=30)


def test_invocations_show_the_flow_as_step_0_and_its_steps_after(make_store):
    async def main():
        store = await make_store()
        await Executor(Twice(2), store, "f1").run()
        found = await store.get_invocations_for_flow("f1"), await store.get_invocation("f1", 1)
        await store.close()
        return found
    invocations, first = run(main())
    assert [(i.step, i.method_name, i.status) for i in invocations] == [
        (0, "run", InvocationStatus.COMPLETE), (1, "double", InvocationStatus.COMPLETE)]
    assert first.class_name == "Twice" and first.attempts == 1 and first.deserialize_return_value() == 4


def test_recorded_invocations_timers_and_suspension_results(make_store):
    async def main():
        store = await make_store()
        started = await store.log_invocation_start("f", 0, "F", "run", b"p", 7)
        past = datetime.now() - timedelta(seconds=5)
        await store.log_timer("f", 0, past, "t")
        timer = await store.get_invocation("f", 0)
        expired = await store.get_expired_timers(datetime.now())
        claims = await asyncio.gather(store.claim_timer("f", 0), store.claim_timer("f", 0))
        await store.store_suspension_result("f", 0, "t", b"done")
        kept = await store.get_suspension_result("f", 0, "t")
        await store.remove_suspension_result("f", 0, "t")
        gone = await store.get_suspension_result("f", 0, "t")
        await store.log_invocation_completion("f", 0, b"r")
        await store.update_is_retryable("f", 0, False)
        failed = await store.has_non_retryable_error("f")
        await store.reset()
        after = await store.get_invocations_for_flow("f")
        await store.close()
        return started, timer, expired, claims, kept, gone, failed, after
    started, timer, expired, claims, kept, gone, failed, after = run(main())
    assert started.status is InvocationStatus.PENDING and started.attempts == 1
    assert timer.status is InvocationStatus.WAITING_FOR_TIMER and timer.timer_name == "t"
    assert [(t.flow_id, t.step) for t in expired] == [("f", 0)]
    assert sorted(claims) == [False, True]  # one caller takes a timer
    assert (kept, gone, failed, after) == (b"done", None, True, [])


def test_the_queue_through_scheduled_flows(make_store):
    async def main():
        store = await make_store()
        new = ScheduledFlow("task-1", "flow-1", "Twice", b"\x81\xa5value\x01", TaskStatus.PENDING)
        assert await store.enqueue_flow(new) == "task-1"
        taken = await store.dequeue_flow("w1")
        none_left = await store.dequeue_flow("w2")
        await store.retry_flow("task-1", "try again", timedelta(seconds=60))
        retrying = await store.get_scheduled_flow("task-1")
        await store.complete_flow("task-1", TaskStatus.SUSPENDED)
        resumed = await store.resume_flow("flow-1")
        await store.complete_flow("task-1", TaskStatus.COMPLETE)
        done = await store.wait_for_all(["task-1"])
        await store.close()
        return taken, none_left, retrying, resumed, done
    taken, none_left, retrying, resumed, done = run(main())
    assert (taken.task_id, taken.flow_id, taken.locked_by, taken.status) == ("task-1", "flow-1", "w1",
                                                                            TaskStatus.RUNNING)
    assert none_left is None
    assert (retrying.status, retrying.retry_count, retrying.error_message) == (TaskStatus.PENDING, 1, "try again")
    assert resumed is True and done == [("task-1", TaskStatus.COMPLETE)]


def test_worker_builder_and_handle_methods():
    async def main():
        store = InMemoryExecutionLog()
        worker = (Worker(store, worker_id="w-7").with_timers().with_timer_interval(0.1)
                  .with_poll_interval(0.05).with_max_concurrent_flows(3).with_signal_interval(0.2))
        await worker.register(Twice, lambda f: f.run())
        handle = await worker.start()
        running = handle.is_running()
        handle.abort()
        deadline = asyncio.get_running_loop().time() + 10
        while handle.is_running() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return worker, handle, running
    worker, handle, running = run(main())
    assert (worker.worker_id, worker.concurrency, worker.poll_interval) == ("w-7", 3, 0.05)
    assert handle.worker_id() == "w-7" and running is True and handle.is_running() is False


def test_invocation_record_methods():
    inv = Invocation("i", "f", 0, "F", "run", b"\x01", 5, status=InvocationStatus.PENDING, attempts=1)
    inv.increment_attempts()
    inv.set_status(InvocationStatus.COMPLETE)
    assert (inv.is_flow(), inv.attempts, inv.is_complete, inv.get_params_hash()) == (True, 2, True, 5)
    assert "step=0" in repr(inv) and "COMPLETE" in repr(inv)
    with pytest.raises(ValueError):
        Invocation("i", "f", 1, "F", "s", b"", 0, status=InvocationStatus.WAITING_FOR_TIMER)


def test_pyergons_protocols_type_ids_and_timer_error():
    from ergon_actors.core import FlowType, get_flow_type_id
    from ergon_actors.executor.timer import TimerError
    from ergon_actors.storage import TimerNotificationSource, WorkNotificationSource

    store = InMemoryExecutionLog()
    assert isinstance(Twice, FlowType) and get_flow_type_id(Twice(1)) == "Twice" == get_flow_type_id(Twice)
    assert get_flow_type_id(object()) == "object"
    assert isinstance(store, WorkNotificationSource) and not isinstance(store, TimerNotificationSource)
    with pytest.raises(TimerError, match="inside a running flow"):
        run(schedule_timer(1))
