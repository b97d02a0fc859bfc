"""The side-effect ledger in one process: positions found from inside step bodies, no-op outside chaos."""

import asyncio
from dataclasses import dataclass

import pytest

from ergon_actors import Executor, InMemoryExecutionLog, flow, flow_type, step
from ergon_actors.chaos.ledger import LEDGER_ENV, LedgerReader, read_ledger
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
