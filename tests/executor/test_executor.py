"""The durable layer in one process: replay, positions, nondeterminism, failures, retries."""

from dataclasses import dataclass

import pytest

from ergon_actors import (Executor, FlowDefinitionError, InMemoryExecutionLog,
                          RetryableError, RetryPolicy, Scheduler, SerializationError,
                          Worker, flow, flow_type, step)
from ergon_actors.core import Failure, StepRecord
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


@dataclass
@flow_type
class Counter:
    n: int

    @step
    async def add(self, value: int, amount: int) -> int:
        CALLS.append(f"add{amount}")
        return value + amount

    @flow
    async def run(self) -> int:
        total = 0
        for i in range(self.n):  # the same step in a loop: one journal entry per call
            total = await self.add(total, i)
        return total


def test_steps_in_a_loop_are_separate_positions_and_replay_without_running(make_store):
    async def body():
        store = await make_store()
        outcome = await Executor(Counter(4), store, "c1").run()
        assert (outcome.status, outcome.result) == ("COMPLETE", 6)
        steps = await store.load_steps("c1")
        assert [(s.position, s.name) for s in steps] == [(0, "add"), (1, "add"), (2, "add"), (3, "add")]
        CALLS.clear()
        again = await Executor(Counter(4), store, "c1").run()  # finished: answered from the journal
        assert (again.status, again.result, CALLS) == ("COMPLETE", 6, [])
        await store.close()
    run(body())


def test_an_interrupted_flow_replays_recorded_steps_and_runs_the_rest(make_store):
    async def body():
        store = await make_store()
        await Scheduler(store).schedule(Counter(3), "c2")
        claim, = await store.claim("dead-worker", 1, 60.0, flow_id="c2")
        await store.append_step("c2", claim.flow.epoch, StepRecord(0, "add", _hash(0, 0), result=_enc(0)))
        await store.append_step("c2", claim.flow.epoch, StepRecord(1, "add", _hash(0, 1), result=_enc(1)))
        outcome = await Executor(Counter(3), store, "c2").run()  # takes over the live lease
        assert (outcome.status, outcome.result) == ("COMPLETE", 3)
        assert CALLS == ["add2"]  # positions 0 and 1 replayed, only 2 ran
        await store.close()
    run(body())


@dataclass
@flow_type(name="Changing")
class ChangingV2:
    @step
    async def renamed(self) -> int:
        return 1

    @flow
    async def run(self) -> int:
        return await self.renamed()


def test_replay_of_changed_code_raises_nondeterminism_naming_position_and_steps(make_store):
    async def body():
        store = await make_store()
        await store.schedule_flow("n1", "Changing", _enc({}))
        claim, = await store.claim("w", 1, 60.0, flow_id="n1")
        await store.append_step("n1", claim.flow.epoch, StepRecord(0, "original", 0, result=_enc(1)))
        outcome = await Executor(ChangingV2(), store, "n1").run()
        assert outcome.status == "FAILED"
        assert outcome.error.type_name == "NondeterminismError"
        assert "position 0" in outcome.error.message
        assert "recorded original" in outcome.error.message and "called renamed" in outcome.error.message
        await store.close()
    run(body())


def test_replay_with_different_arguments_is_nondeterminism(make_store):
    async def body():
        store = await make_store()
        await Scheduler(store).schedule(Counter(1), "n2")
        claim, = await store.claim("w", 1, 60.0, flow_id="n2")
        await store.append_step("n2", claim.flow.epoch, StepRecord(0, "add", _hash(5, 0), result=_enc(5)))
        outcome = await Executor(Counter(1), store, "n2").run()
        assert outcome.error.type_name == "NondeterminismError"
        assert "position 0" in outcome.error.message and "add(args #" in outcome.error.message
        assert CALLS == []  # the step body did not run
        await store.close()
    run(body())


class Declined(RetryableError):
    def is_retryable(self) -> bool:
        return False


class Flaky(RetryableError):
    pass


@dataclass
@flow_type
class Payment:
    failures: int
    permanent: bool = False

    @step
    async def charge(self) -> str:
        CALLS.append("charge")
        if self.permanent:
            raise Declined("card declined")
        if CALLS.count("charge") <= self.failures:
            raise Flaky(f"timeout {CALLS.count('charge')}")
        return "charged"

    @flow(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.01, multiplier=1.0))
    async def run(self) -> str:
        return await self.charge()


def test_retryable_errors_are_retried_with_attempts_journaled(make_store):
    async def body():
        store = await make_store()
        worker = Worker(store, "w1", poll_interval=0.01)
        await worker.register(Payment)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(Payment(failures=2))
        record = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert (record.status, record.value, record.attempt) == ("COMPLETE", "charged", 3)
        assert CALLS == ["charge"] * 3
        await store.close()
    run(body())


def test_a_permanent_error_fails_at_once_and_is_recorded_as_data(make_store):
    async def body():
        store = await make_store()
        outcome = await Executor(Payment(failures=0, permanent=True), store, "p1").run()
        assert outcome.status == "FAILED"
        assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == (
            f"{__name__}:Declined", "card declined", False)
        record = await store.get_flow("p1")
        assert record.error == outcome.error  # stored as data, read back equal
        assert isinstance(record.error.to_exception(), Declined)  # its module is registered
        assert CALLS == ["charge"]
        await store.close()
    run(body())


def test_exhausted_retries_fail_with_the_last_error(make_store):
    async def body():
        store = await make_store()
        worker = Worker(store, "w1", poll_interval=0.01)
        await worker.register(Payment)
        handle = await worker.start()
        flow_id = await Scheduler(store).schedule(Payment(failures=10))
        record = await store.wait_for_completion(flow_id, timeout=10)
        await handle.shutdown()
        assert (record.status, record.attempt, record.error.message) == ("FAILED", 3, "timeout 3")
        await store.close()
    run(body())


@dataclass
@flow_type
class Leaky:
    @step
    async def make(self) -> object:
        return object()

    @flow
    async def run(self) -> object:
        return await self.make()


def test_an_unstorable_step_result_fails_the_flow_naming_flow_step_and_type(make_store):
    async def body():
        store = await make_store()
        outcome = await Executor(Leaky(), store, "l1").run()
        assert outcome.status == "FAILED" and outcome.error.type_name == "SerializationError"
        for part in ("'make'", "Leaky", "'l1'", "object"):
            assert part in outcome.error.message
        assert await store.load_steps("l1") == [] or (await store.load_steps("l1"))[0].status != "COMPLETE"
        await store.close()
    run(body())


@dataclass
@flow_type
class Holder:
    thing: object

    @flow
    async def run(self) -> None:
        return None


def test_unstorable_arguments_fail_at_schedule_time_with_a_clear_error(make_store):
    async def body():
        store = await make_store()
        with pytest.raises(SerializationError) as info:
            await Scheduler(store).schedule(Holder(object()))
        assert "Holder" in str(info.value) and "'thing'" in str(info.value) and "object" in str(info.value)
        assert await store.list_flows() == []
        await store.close()
    run(body())


class NotADataclass:
    @flow
    async def run(self) -> None:
        return None


def test_invalid_flow_classes_are_refused_with_the_reason():
    store = InMemoryExecutionLog()
    with pytest.raises(FlowDefinitionError, match="not a flow"):
        run(Scheduler(store).schedule(NotADataclass()))
    plain = flow_type(NotADataclass)
    with pytest.raises(FlowDefinitionError, match="not a dataclass"):
        run(Scheduler(store).schedule(plain()))

    @dataclass
    @flow_type
    class NoEntry:
        x: int = 0
    with pytest.raises(FlowDefinitionError, match="has no @flow method"):
        run(Scheduler(store).schedule(NoEntry()))


LOG: list[str] = []


class Plain:
    """Not a @flow_type dataclass: an Executor runs it all the same (as PyErgon's does)."""

    def __init__(self, amount: int) -> None:
        self.amount = amount

    @step
    async def double(self) -> int:
        LOG.append("double")
        return self.amount * 2

    async def total(self) -> int:
        return await self.double() + 1


def test_an_executor_runs_an_object_of_any_class_with_its_steps_journaled():
    async def body():
        store = InMemoryExecutionLog()
        LOG.clear()
        first = await Executor(Plain(20), store, "plain").execute(lambda f: f.total())
        assert first.result == 41 and LOG == ["double"]
        steps = await store.load_steps("plain")
        assert [s.name for s in steps] == ["double"]
        flow = await store.get_flow("plain")
        assert flow is not None and flow.flow_type == "Plain"
    run(body())


def test_failure_roundtrip_rebuilds_builtin_exceptions():
    failure = Failure.from_exception(KeyError("k"))
    rebuilt = failure.to_exception()
    assert isinstance(rebuilt, KeyError) and rebuilt.args == ("k",)


def _enc(value):
    from ergon_actors import codec
    return codec.encode(value)


def _hash(*args):
    from ergon_actors import codec
    return codec.args_hash(args, {})
