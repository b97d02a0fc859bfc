"""The side-effect ledger in one process: positions found from inside step bodies, no-op outside chaos."""

import asyncio
from dataclasses import dataclass

import pytest

from ergon_actors import (DeferredRegistry, Executor, InMemoryExecutionLog, RetryableError, RetryPolicy, flow,
                          flow_type, sleep, step)
from ergon_actors.chaos.ledger import LEDGER_ENV, LedgerReader, read_ledger
from ergon_actors.executor import current_step
from ergon_actors.executor.context import NESTED
from ergon_actors.testing import ledger
from tests.helpers import run

pytestmark = pytest.mark.timeout(30)


@dataclass
@flow_type
class Recorded:
    n: int

    @step
    async def first(self) -> int:
        ledger.record()
        return 0

    @step
    async def each(self, i: int) -> int:
        self._deeper()  # a helper the body calls records the body's step
        return i

    def _deeper(self) -> None:
        ledger.record(note="helper")

    @step
    async def side(self, tag: str) -> str:
        await asyncio.sleep(0.01)
        ledger.record()
        return tag

    @flow
    async def run(self) -> list:
        out = [await self.first()]
        out += [await self.each(i) for i in range(self.n)]
        out += await asyncio.gather(self.side("a"), self.side("b"))  # positions taken before either runs
        return out


def test_record_writes_flow_position_step_and_epoch(tmp_path, monkeypatch):
    path = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    outcome = run(Executor(Recorded(2), InMemoryExecutionLog(), "flow-1").run())
    assert outcome.unwrap() == [0, 0, 1, "a", "b"]
    entries = read_ledger(str(path))
    assert sorted((e.position, e.step) for e in entries) == [(0, "first"), (1, "each"), (2, "each"),
                                                             (3, "side"), (4, "side")]
    assert {(e.flow_id, e.epoch, e.attempt) for e in entries} == {("flow-1", 1, 1)}
    assert [e.note for e in entries if e.step == "each"] == ["helper", "helper"]


class Busy(RetryableError):
    pass


@dataclass
@flow_type
class Shaped:
    """A DAG whose first-registered node needs the second, a node beside them, and a retried step."""

    @step
    async def node(self, tag: str, pause: float) -> str:
        ledger.record(note=tag)
        await asyncio.sleep(pause)
        return tag

    @step(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.0))
    async def flaky(self) -> int:
        ledger.record()
        call = current_step()
        if call is not None and call.try_number < 2:
            raise Busy("try again")
        return 2

    @step
    async def nap(self) -> str:
        ledger.record()
        await sleep(0)  # a timer nested in this step's body: position "6.0"
        return "rested"

    @flow
    async def run(self) -> int:
        await self.node("first", 0)
        dag = DeferredRegistry()
        dag.register("late", ["early"], lambda _: self.node("late", 0))
        dag.register("early", [], lambda _: self.node("early", 0))
        dag.register("beside", [], lambda _: self.node("beside", 0.3))
        await dag.execute()
        await self.node("after", 0)
        tries = await self.flaky()
        await self.nap()
        await self.node("last", 0)
        return tries


def test_record_names_the_positions_in_flight_and_the_try(tmp_path, monkeypatch):
    path = tmp_path / "ledger"
    monkeypatch.setenv(LEDGER_ENV, str(path))
    store = InMemoryExecutionLog()
    assert run(Executor(Shaped(), store, "shaped").run()).is_suspended  # try 1 of flaky failed
    assert run(Executor(Shaped(), store, "shaped").run()).unwrap() == 2
    lines = {(e.note or e.step, e.try_number): e for e in read_ledger(str(path))}
    assert [lines["first", 1].position, lines["late", 1].position, lines["early", 1].position,
            lines["beside", 1].position, lines["after", 1].position, lines["flaky", 1].position] == [0, 1, 2, 3, 4, 5]
    assert lines["early", 1].pending == (1,)  # "late" holds position 1 and waits for "early"
    assert (lines["late", 1].pending, lines["late", 1].ahead) == ((), (2,))
    assert lines["late", 1].got_past(2) and not lines["late", 1].got_past(3) and not lines["early", 1].got_past(1)
    assert (lines["after", 1].pending, lines["after", 1].ahead) == ((), ())
    assert (lines["flaky", 1].epoch, lines["flaky", 2].epoch) == (1, 2)
    assert lines["flaky", 2].got_past(4) and not lines["flaky", 2].got_past(5)
    nested = 7 * NESTED  # the timer in nap's body (position 6)
    assert [s.position for s in run(store.load_steps("shaped")) if s.name == "timer:sleep"] == [nested]
    assert (lines["last", 1].position, lines["last", 1].pending, lines["last", 1].ahead) == (7, (), ())
    assert lines["last", 1].got_past(nested) and not lines["nap", 1].got_past(nested)


def test_record_is_a_no_op_outside_a_chaos_run(tmp_path, monkeypatch):
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    ledger.record()  # not even in a flow: nothing happens
    assert not ledger.active
    assert run(Executor(Recorded(1), InMemoryExecutionLog()).run()).unwrap() == [0, 0, "a", "b"]


def test_record_outside_a_step_is_an_error_during_a_chaos_run(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger"))
    with pytest.raises(RuntimeError, match="@step body"):
        ledger.record()


def test_reader_returns_complete_lines_once(tmp_path):
    path = tmp_path / "ledger"
    line = '{"flow":"f","pos":0,"step":"s","epoch":1,"attempt":1,"pid":1,"t":1.0}\n'
    path.write_text(line + line[:20])
    reader = LedgerReader(str(path))
    assert [e.position for e in reader.poll()] == [0]
    with open(path, "a") as f:
        f.write(line[20:] + "not json\n")
    assert [e.flow_id for e in reader.poll()] == ["f"]
    assert reader.poll() == [] and reader.malformed == 1
