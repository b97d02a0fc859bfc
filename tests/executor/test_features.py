"""Timers, signals, child flows, DAG, step retries, timeouts and cancellation, in one process."""

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ergon_actors import (ChildFlowError, DeferredRegistry, Executor, InMemorySignalSource,
                          RetryableError, RetryPolicy, Scheduler, SignalTimeoutError,
                          SqliteExecutionLog, Worker, await_external_signal, codec, flow, flow_type,
                          schedule_timer_named, sleep, step)
from ergon_actors.executor import parse_duration
from tests.helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)
LOG: list[str] = []


@pytest.fixture(autouse=True)
def clear_log():
    LOG.clear()


async def serve(store, *classes, **options):
    worker = Worker(store, "w1", poll_interval=0.01, **options)
    for cls in classes:
        await worker.register(cls)
    return worker, await worker.start()


@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (1.5, 1.5), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("3d", 259200.0),
    ("1h30m", 5400.0), ("250ms", 0.25), (timedelta(minutes=2), 120.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "ten minutes", "5x", -1, "1h 30q"])
def test_parse_duration_refuses_what_is_not_a_duration(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@dataclass
@flow_type
class Napper:
    seconds: float

    @step
    async def before(self) -> str:
        LOG.append("before")
        return "b"

    @step
    async def after(self) -> str:
        LOG.append("after")
        return "a"

    @flow
    async def run(self) -> str:
        await self.before()
        await sleep(self.seconds)
        return await self.after()


def test_a_timer_suspends_the_flow_and_it_resumes_when_due(make_store):
    async def body():
        store = await make_store()
        first = await Executor(Napper(0.3), store, "t1").run()
        assert first.status == "SUSPENDED" and LOG == ["before"]
        record = await store.get_flow("t1")
        assert record.owner is None and record.ready_at > time.time()  # holds no worker
        _worker, handle = await serve(store, Napper)
        done = await store.wait_for_completion("t1", timeout=10)
        await handle.shutdown()
        assert (done.status, done.value, LOG) == ("COMPLETE", "a", ["before", "after"])
        assert time.time() >= record.ready_at
        await store.close()
    run(body())


def test_a_timer_due_while_everything_was_down_fires_on_restart(tmp_path):
    path = tmp_path / "flows.db"

    async def first():
        store = await SqliteExecutionLog(path).connect()
        assert (await Executor(Napper(0.2), store, "t2").run()).status == "SUSPENDED"
        await store.close()

    async def later():
        store = await SqliteExecutionLog(path).connect()
        _worker, handle = await serve(store, Napper)
        done = await store.wait_for_completion("t2", timeout=10)
        await handle.shutdown()
        await store.close()
        return done

    LOG.clear()
    run(first())
    time.sleep(0.3)  # the whole runtime is down past the deadline
    assert run(later()).value == "a" and LOG == ["before", "after"]


@dataclass
@flow_type
class TimedOrder:
    order_id: str

    @step
    async def wait_for_fraud_check(self) -> None:
        LOG.append("waiting")
        await schedule_timer_named(0.2, f"fraud-{self.order_id}")
        LOG.append("checked")

    @flow
    async def process(self) -> str:
        await self.wait_for_fraud_check()
        return "completed"


def test_a_named_timer_inside_a_step(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, TimedOrder)
        flow_id = await Scheduler(store).schedule(TimedOrder("A"))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        steps = await store.load_steps(flow_id)
        assert done.value == "completed"
        assert [s.name for s in steps] == ["wait_for_fraud_check", "timer:fraud-A"]
        assert LOG == ["waiting", "waiting", "checked"]  # code before the timer ran again on resume
        await store.close()
    run(body())


@dataclass
@flow_type
class Approval:
    doc: str
    timeout: float = 0.0

    @flow
    async def run(self) -> object:
        try:
            return await await_external_signal(f"approve-{self.doc}", timeout=self.timeout or None)
        except SignalTimeoutError:
            return "timed out"


def test_a_signal_sent_after_the_wait_wakes_the_flow(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, Approval)
        flow_id = await Scheduler(store).schedule(Approval("D1"))
        await _until(lambda: store.waiting_signals(), ["approve-D1"])
        assert (await store.get_flow(flow_id)).status == "SUSPENDED"
        assert await store.send_signal("approve-D1", codec.encode({"ok": True}))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == {"ok": True}
        await store.close()
    run(body())


def test_a_signal_sent_before_the_wait_is_kept_and_delivered_once(make_store):
    async def body():
        store = await make_store()
        assert await store.send_signal("approve-D2", codec.encode("yes"))
        assert not await store.send_signal("approve-D2", codec.encode("again"))
        _worker, handle = await serve(store, Approval)
        first = await Scheduler(store).schedule(Approval("D2"))
        assert (await store.wait_for_completion(first, timeout=10)).value == "yes"
        second = await Scheduler(store).schedule(Approval("D2", timeout=0.2))  # same name: none left
        assert (await store.wait_for_completion(second, timeout=10)).value == "timed out"
        await handle.shutdown()
        await store.close()
    run(body())


def test_with_signals_delivers_from_a_signal_source(make_store):
    async def body():
        store = await make_store()
        source = InMemorySignalSource()
        worker = Worker(store, "w1", poll_interval=0.01).with_signals(source, poll_interval=0.02)
        await worker.register(Approval)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(Approval("D3"))
        await _until(lambda: store.waiting_signals(), ["approve-D3"])
        await source.send_signal("approve-D3", b"decision-bytes")
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == b"decision-bytes" and await source.poll_for_signal("approve-D3") is None
        await store.close()
    run(body())


@dataclass
@flow_type
class Child:
    n: int

    @step
    async def work(self) -> int:
        LOG.append(f"child{self.n}")
        if self.n < 0:
            raise ValueError("negative")
        return self.n * 10

    @flow
    async def run(self) -> int:
        return await self.work()


@dataclass
@flow_type
class Parent:
    n: int

    @step
    async def first(self) -> str:
        LOG.append("parent-first")
        return "p"

    @flow
    async def run(self) -> str:
        await self.first()
        try:
            value = await self.invoke(Child(self.n)).result()
        except ChildFlowError as exc:
            return f"child failed: {exc.error_type}: {exc.error_message}"
        return f"child said {value}"


def test_a_child_flow_runs_once_and_its_result_reaches_the_parent(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, Parent, Child)
        flow_id = await Scheduler(store).schedule(Parent(4), "p1")
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == "child said 40"
        assert LOG == ["parent-first", "child4"]
        child = await store.get_flow("p1/1")
        assert (child.parent_id, child.status) == ("p1", "COMPLETE")
        assert len(await store.list_flows()) == 2
        await store.close()
    run(body())


def test_a_child_failure_is_an_error_the_parent_can_catch(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, Parent, Child)
        flow_id = await Scheduler(store).schedule(Parent(-1))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == "child failed: ValueError: negative"
        await store.close()
    run(body())


@dataclass
@flow_type
class Diamond:
    @step
    async def left(self) -> int:
        LOG.append("left")
        EVENTS["left"].set()
        await EVENTS["right"].wait()  # only finishes if `right` runs at the same time
        return 1

    @step
    async def right(self) -> int:
        LOG.append("right")
        EVENTS["right"].set()
        await EVENTS["left"].wait()
        return 2

    @step
    async def join(self, a: int, b: int) -> int:
        LOG.append("join")
        return a + b

    @flow
    async def run(self) -> int:
        registry = DeferredRegistry()
        registry.register("left", [], lambda inputs: self.left())
        registry.register("right", [], lambda inputs: self.right())
        total = registry.register("join", ["left", "right"],
                                  lambda inputs: self.join(inputs["left"], inputs["right"]))
        await registry.execute()
        return await total.resolve()


EVENTS: dict[str, asyncio.Event] = {}


def test_dag_runs_independent_steps_in_parallel_and_journals_each(make_store):
    async def body():
        EVENTS.update(left=asyncio.Event(), right=asyncio.Event())
        store = await make_store()
        outcome = await Executor(Diamond(), store, "d1").run()
        assert outcome.result == 3
        steps = await store.load_steps("d1")
        assert [(s.position, s.name) for s in steps] == [(0, "left"), (1, "right"), (2, "join")]
        LOG.clear()
        assert (await Executor(Diamond(), store, "d1").run()).result == 3 and LOG == []
        await store.close()
    run(body())


def test_dag_cycles_and_unknown_dependencies_are_refused():
    registry = DeferredRegistry()
    registry.register("a", ["b"], lambda i: None)
    registry.register("b", ["a"], lambda i: None)
    with pytest.raises(ValueError, match="cycle"):
        registry.validate()
    other = DeferredRegistry()
    other.register("a", ["missing"], lambda i: None)
    with pytest.raises(ValueError, match="non-existent step 'missing'"):
        other.validate()


class Flaky(RetryableError):
    pass


@dataclass
@flow_type
class StepRetry:
    failures: int

    @step(retry_policy=RetryPolicy(max_attempts=4, initial_delay=0.05, multiplier=2.0))
    async def call_api(self) -> str:
        LOG.append(f"try@{time.time():.3f}")
        if len(LOG) <= self.failures:
            raise Flaky(f"attempt {len(LOG)}")
        return "ok"

    @flow
    async def run(self) -> str:
        return await self.call_api()


def test_step_retries_journal_each_try_and_keep_the_backoff(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, StepRetry)
        flow_id = await Scheduler(store).schedule(StepRetry(2))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert done.value == "ok" and len(LOG) == 3
        times = [float(entry[4:]) for entry in LOG]
        assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1  # backoff kept
        step_record, = await store.load_steps(flow_id)
        assert (step_record.status, step_record.tries) == ("COMPLETE", 3)
        await store.close()
    run(body())


def test_step_retries_exhausted_fail_the_flow_with_the_last_error(make_store):
    async def body():
        store = await make_store()
        _worker, handle = await serve(store, StepRetry)
        flow_id = await Scheduler(store).schedule(StepRetry(10))
        done = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert (done.status, done.error.message, len(LOG)) == ("FAILED", "attempt 4", 4)
        await store.close()
    run(body())


@dataclass
@flow_type
class Slow:
    step_seconds: float

    @step(timeout=0.1)
    async def slow(self) -> str:
        await asyncio.sleep(self.step_seconds)
        return "done"

    @flow(timeout=5)
    async def run(self) -> str:
        return await self.slow()


@dataclass
@flow_type
class SlowFlow:
    @step
    async def slow(self) -> str:
        await asyncio.sleep(5)
        return "never"

    @flow(timeout=0.2)
    async def run(self) -> str:
        return await self.slow()


def test_step_and_flow_timeouts(make_store):
    async def body():
        store = await make_store()
        quick = await Executor(Slow(0.0), store, "s0").run()
        timed_out = await Executor(Slow(1.0), store, "s1").run()
        whole = await Executor(SlowFlow(), store, "s2").run()
        assert quick.result == "done"
        assert (timed_out.status, timed_out.error.type_name) == ("FAILED", "StepTimeoutError")
        assert (whole.status, whole.error.type_name) == ("FAILED", "FlowTimeoutError")
        await store.close()
    run(body())


class Deferred:
    """An entry that is awaitable but not a coroutine: it starts the flow only when awaited."""

    def __init__(self, flow):
        self.flow = flow

    def __await__(self):
        return self.flow.run().__await__()


def test_a_flow_past_its_timeout_fails_with_flow_timeout_error_whatever_its_entry_returns(make_store):
    async def body():
        store = await make_store()
        await Scheduler(store).schedule(SlowFlow(), "late")
        created = (await store.get_flow("late")).created_at

        async def timed_out():
            return time.time() > created + 0.2  # SlowFlow's timeout

        await wait_until_async(timed_out, what="the flow's timeout to pass")
        outcome = await Executor(SlowFlow(), store, "late").run(entry=Deferred)
        assert (outcome.status, outcome.error.type_name) == ("FAILED", "FlowTimeoutError")
        await store.close()
    run(body())


@dataclass
@flow_type
class Long:
    steps: int

    @step
    async def tick(self, i: int) -> int:
        LOG.append(f"tick{i}")
        if i == 1:
            await EVENTS["gate"].wait()
        return i

    @flow
    async def run(self) -> int:
        for i in range(self.steps):
            await self.tick(i)
        return self.steps


def test_cancel_stops_a_running_flow_at_its_next_step_and_a_waiting_one_at_once(make_store):
    async def body():
        EVENTS["gate"] = asyncio.Event()
        store = await make_store()
        _worker, handle = await serve(store, Long, Parent, Child, Approval)
        running = await Scheduler(store).schedule(Long(5))
        await _until(lambda: _async(LOG.copy()), ["tick0", "tick1"])
        assert await store.cancel_flow(running) == "RUNNING"
        EVENTS["gate"].set()
        done = await store.wait_for_completion(running, timeout=10)
        assert done.status == "CANCELLED" and LOG == ["tick0", "tick1"]  # tick2 never started

        waiting = await Scheduler(store).schedule(Approval("never"))
        await _until(lambda: store.waiting_signals(), ["approve-never"])
        assert await store.cancel_flow(waiting) == "CANCELLED"
        assert (await store.get_flow(waiting)).status == "CANCELLED"
        await handle.shutdown()
        await store.close()
    run(body())


def test_cancelling_a_parent_cancels_its_waiting_child(make_store):
    async def body():
        store = await make_store()
        await store.schedule_flow("p", "Parent", codec.encode({"n": 1}))
        claim, = await store.claim("w", 1, 30.0, flow_id="p")
        from ergon_actors.core import StepRecord
        from ergon_actors.storage.commands import ScheduleFlow
        assert await store.invoke_child("p", claim.flow.epoch, StepRecord(1, "child:Child", 0),
                                        ScheduleFlow("p/1", "Child", codec.encode({"n": 1}))) is None
        assert await store.cancel_flow("p") == "CANCELLED"
        assert (await store.get_flow("p/1")).status == "CANCELLED"
        await store.close()
    run(body())


async def _async(value):
    return value


async def _until(probe, expected, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, waiting for {expected!r}"
        await asyncio.sleep(0.01)
