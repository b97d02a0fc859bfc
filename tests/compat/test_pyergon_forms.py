"""PyErgon's forms of our names: RetryPolicy in milliseconds, the decorators' marks, several @flow
methods, ChildFlowError and PendingChild, its worker helpers, and what a store API reader sees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from ergon_actors import (ChildFlowError, Executor, FlowDefinitionError, InMemoryExecutionLog, PendingChild,
                          RetryableError, RetryPolicy, Scheduler, SchedulerError, SerializationError, TaskStatus,
                          Worker, execute_flow, flow, flow_type, step)
from ergon_actors.core import Failure, ScheduledFlow
from ergon_actors.executor.definition import encode_args
from ergon_actors.executor.execution import (check_should_retry, handle_flow_completion, handle_flow_error,
                                             handle_suspended_flow)
from ergon_actors.executor.outcome import SuspendReason
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)


def test_retry_policy_in_pyergons_milliseconds_is_the_same_policy():
    policy = RetryPolicy(max_attempts=4, initial_delay_ms=250, max_delay_ms=1000, backoff_multiplier=3.0)
    assert policy == RetryPolicy(4, 0.25, 3.0, 1.0)
    assert (policy.initial_delay_ms, policy.max_delay_ms, policy.backoff_multiplier) == (250, 1000, 3.0)
    assert [policy.delay_for_attempt(n) for n in (1, 2, 3, 4)] == [250, 750, 1000, None]
    assert RetryPolicy.with_max_attempts(5) == RetryPolicy(5, 1.0, 2.0, 30.0)
    with pytest.raises(ValueError, match="not both"):
        RetryPolicy(2, initial_delay=1.0, initial_delay_ms=1000)


@dataclass
@flow_type(type_id="Renamed", retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.01))
class Marked:
    attempts: int = 0

    @step
    async def fetch(self) -> int:
        return 1

    @step(depends_on="fetch", inputs={"x": "fetch", "y": "other"})
    async def use(self, x: int, y: int) -> int:
        return x + y

    @flow
    async def run(self) -> int:
        return await self.fetch()


def test_the_decorators_set_pyergons_marks():
    assert Marked._is_ergon_flow is True and Marked.type_id() == "Renamed"
    assert Marked._ergon_steps == ["fetch", "use"]
    assert Marked.use._is_ergon_step is True and Marked.use._step_name == "use"
    assert Marked.use._step_depends_on == ["fetch", "other"] and Marked.use._step_inputs == {"x": "fetch", "y": "other"}
    assert Marked.run._is_ergon_flow_method is True and Marked.run._flow_method_name == "run"


FLAKY: list[int] = []


@dataclass
@flow_type(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.01, multiplier=1.0))
class RetriedByItsType:
    n: int = 0

    @step
    async def flaky(self) -> str:
        FLAKY.append(1)
        if len(FLAKY) < 3:
            raise ConnectionError("try again")
        return "ok"

    @flow
    async def run(self) -> str:
        return await self.flaky()


def test_flow_type_retry_policy_applies_when_the_flow_method_names_none():
    async def body() -> None:
        FLAKY.clear()
        store = InMemoryExecutionLog()
        worker = Worker(store, "w1", poll_interval=0.01)
        await worker.register(RetriedByItsType)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(RetriedByItsType())
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert (done.status, done.value, done.attempt, len(FLAKY)) == (TaskStatus.COMPLETE, "ok", 3, 3)
    run(body())


@dataclass
@flow_type
class TwoEntries:
    value: int

    @flow
    async def plus(self) -> int:
        return self.value + 1

    @flow
    async def minus(self) -> int:
        return self.value - 1


def test_an_executor_runs_the_entry_it_is_given_and_refuses_to_guess_one():
    async def body() -> None:
        store = InMemoryExecutionLog()
        assert (await Executor(TwoEntries(5), store, "p").run(lambda f: f.minus())).result == 4
        assert (await execute_flow(TwoEntries(5), store, lambda f: f.plus(), "q")).result == 6
        with pytest.raises(FlowDefinitionError, match=r"several @flow methods \(minus, plus\)"):
            await Executor(TwoEntries(5), store, "r").run()
        assert await store.get_flow("r") is None  # refused before anything was stored
    run(body())


def test_unstorable_arguments_are_a_serialization_error_and_pyergons_scheduler_error():
    @dataclass
    @flow_type
    class Holds:
        thing: object

        @flow
        async def run(self) -> None:
            return None

    async def body() -> None:
        with pytest.raises(SchedulerError) as info:
            await Scheduler(InMemoryExecutionLog()).schedule(Holds(object()))
        assert isinstance(info.value, SerializationError) and "'thing'" in str(info.value)
    run(body())


class CardDeclined(RetryableError):
    def is_retryable(self) -> bool:
        return False


CHILD_RUNS: list[str] = []


@dataclass
@flow_type
class Charge:
    card: str

    @step
    async def charge(self) -> str:
        CHILD_RUNS.append(self.card)
        raise CardDeclined(f"card {self.card} declined")

    @flow
    async def run(self) -> str:
        return await self.charge()


@dataclass
@flow_type
class Order:
    card: str

    @flow(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.01))
    async def run(self) -> str:
        try:
            return await self.invoke(Charge(self.card)).result()
        except ChildFlowError as exc:
            ORDER_ERRORS.append(exc)
            raise


ORDER_ERRORS: list[ChildFlowError] = []


def test_a_childs_permanent_failure_is_not_retried_by_its_parents_policy():
    async def body() -> None:
        CHILD_RUNS.clear()
        ORDER_ERRORS.clear()
        store = InMemoryExecutionLog()
        worker = Worker(store, "w1", poll_interval=0.01)
        await worker.register(Order)
        await worker.register(Charge)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(Order("4242"))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert (done.status, done.attempt, CHILD_RUNS) == (TaskStatus.FAILED, 1, ["4242"])
        (error,) = ORDER_ERRORS
        assert (error.type_name, error.message, error.is_retryable()) == ("CardDeclined", "card 4242 declined", False)
        assert error.flow_id == f"{flow_id}/0" and error.status == "FAILED"
    run(body())


def test_child_flow_error_and_pending_child_in_pyergons_forms():
    error = ChildFlowError("ValueError", "bad input", retryable=True)
    assert (str(error), error.type_name, error.message, error.is_retryable()) == (
        "ValueError: bad input", "ValueError", "bad input", True)
    rebuilt = Failure.from_exception(ChildFlowError("E", "m", retryable=True)).to_exception()
    assert isinstance(rebuilt, ChildFlowError) and rebuilt.is_retryable() is True
    pending = PendingChild(encode_args(Charge("1")), "Charge")
    assert (pending.child_type, pending.flow_id) == ("Charge", None) and "Charge" in repr(pending)

    async def outside() -> None:
        await pending.result()
    with pytest.raises(RuntimeError, match="outside execution context"):
        run(outside())


def _task(flow_id: str, retry_count: int = 0) -> ScheduledFlow:
    now = datetime.now()
    return ScheduledFlow(flow_id, flow_id, "T", b"\x80", TaskStatus.RUNNING, "w1", retry_count, now, now)


def test_pyergons_worker_helpers_retry_fail_complete_and_park_a_flow():
    async def body() -> None:
        store = InMemoryExecutionLog()
        for flow_id in ("a", "b", "c", "d"):
            await store.enqueue_flow(_task(flow_id))
        assert await check_should_retry(store, _task("a")) is None  # it never ran: no invocation 0
        await store.log_invocation_start("a", 0, "T", "run", b"", 1, RetryPolicy(3, 0.5, 2.0, 10.0))
        assert await check_should_retry(store, _task("a", retry_count=1)) == timedelta(seconds=1.0)
        assert await check_should_retry(store, _task("a", retry_count=2)) is None  # the third was the last
        await handle_flow_error(store, "w1", _task("a"), "a", ConnectionError("flaky"), None)
        retrying = await store.get_scheduled_flow("a")
        assert (retrying.status, retrying.retry_count, retrying.error_message) == (TaskStatus.PENDING, 1, "flaky")
        await store.log_invocation_start("b", 0, "T", "run", b"", 1, RetryPolicy.STANDARD)
        await handle_flow_error(store, "w1", _task("b"), "b", CardDeclined("declined"), None)
        assert await store.has_non_retryable_error("b") is True
        failed = await store.get_scheduled_flow("b")
        assert (failed.status, failed.error_message) == (TaskStatus.FAILED, "declined")
        await handle_flow_completion(store, "w1", "c", "c", None)
        assert (await store.get_scheduled_flow("c")).status == TaskStatus.COMPLETE
        await store.log_invocation_start("d", 0, "T", "run", b"", 1)
        await store.log_signal("d", 0, "go")
        await handle_suspended_flow(store, "w1", "d", "d", SuspendReason("d", 0, "go"))
        assert (await store.get_scheduled_flow("d")).status == TaskStatus.SUSPENDED
        await store.store_suspension_result("d", 0, "go", b"payload")
        await handle_suspended_flow(store, "w1", "d", "d", SuspendReason("d", 0, "go"))  # arrived: resumed
        assert (await store.get_scheduled_flow("d")).status == TaskStatus.PENDING
    run(body())
