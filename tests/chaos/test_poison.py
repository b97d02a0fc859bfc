"""Poison flows under chaos: declared ones end quarantined, the harness's own kills blame no flow,
and a verifier that sees either rule broken reports it."""

import asyncio
import os
import shutil
import signal

import psutil
import pytest

from ergon_actors.chaos.blame import check_blame
from ergon_actors.chaos.marks import KillMarks
from ergon_actors.core import Crash, FlowRecord
from ergon_actors.runtime import Supervisor
from ergon_actors.storage.crashes import poison_failure
from ergon_actors.testing import BLAMED, NOT_QUARANTINED, chaos_run
from tests.helpers import read_ledger, run, starts, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]
POISON = "examples.chaos_poison"
FAULTS = {"kill-worker", "stop-worker", "kill-journal", "stop-journal", "kill-supervisor"} | (
    {"disk-full"} if os.geteuid() == 0 else set())  # only root mounts the tmpfs that disk-full fills


def no_actor_left(before: set[int]) -> None:
    mine = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert mine == [], f"processes left behind: {mine}"


def check_poison_run(report, n: int, faults: set[str]) -> None:
    assert report.ok, report.format()
    # A worker fault waits up to 15 s for its target; with poison killing workers all the while,
    # a stop (which leaves a second worker running) may find none, and then says so.
    injected = set(report.faults_by_kind)
    assert "kill-worker" in injected and injected <= faults, report.format()
    for kind in faults - injected:
        assert any(note.startswith(f"{kind} at ") and "skipped" in note for note in report.notes), report.format()
    assert report.statuses == {"COMPLETE": n - 2, "FAILED": 2}, report.format()
    assert report.verified["quarantined flow"] == 2 and report.verified["flow"] == n - 2


def test_poison_flows_under_every_fault_on_sqlite_are_quarantined_and_blame_no_other():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    check_poison_run(run(chaos_run(POISON, 24, duration=10, seed=1), 140), 24, FAULTS)
    no_actor_left(before)


@pytest.mark.redis
def test_poison_flows_under_every_fault_on_redis_are_quarantined_and_blame_no_other():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: run ./scripts/test.sh or apt-get install redis-server")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    report = run(chaos_run(POISON, 24, store="redis", duration=10, seed=2), 140)
    check_poison_run(report, 24, (FAULTS - {"disk-full"}) | {"kill-redis", "stall-redis"})
    no_actor_left(before)


def test_a_declared_poison_flow_that_completes_is_reported():
    report = run(chaos_run("tests.chaos.misdeclared", 6, duration=4, faults=["kill-worker"], seed=1), 140)
    assert not report.ok
    (caught,) = report.violations
    assert caught.kind == NOT_QUARANTINED and caught.flow_id.endswith("-0000"), report.format()
    assert "ended COMPLETE" in caught.detail
    shutil.rmtree(report.work_dir)


def _flow(flow_id: str, status: str, *alone: bool, poison: bool = False) -> FlowRecord:
    crashes = tuple(Crash(1.0 + i, f"w{i}", "exit", 1, None, 2, "charge", a) for i, a in enumerate(alone))
    error = poison_failure(flow_id, crashes) if poison else None
    return FlowRecord(flow_id, "Order", b"", status, error=error, crashes=crashes)


def test_the_blame_check_reports_a_healthy_flow_blamed_and_poison_left_unquarantined():
    found = []
    quarantined = check_blame(
        [_flow("ok", "COMPLETE", False, False), _flow("blamed", "COMPLETE", False, True),
         _flow("p1", "FAILED", True, True, True, poison=True), _flow("p2", "COMPLETE", True)],
        ["p1", "p2", "p3"], lambda *v: found.append(v))
    assert quarantined == 1
    assert [(kind, flow_id, position) for kind, flow_id, position, _ in found] == [
        (BLAMED, "blamed", 2), (NOT_QUARANTINED, "p2", None), (NOT_QUARANTINED, "p3", None)]
    assert "exit code 1 (exit) of worker w1" in found[0][3]
    assert "ended COMPLETE with 1 blamed crashes of 1" in found[1][3]
    assert "not in the store" in found[2][3]


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "unmarked"])
def test_a_kill_the_harness_marked_releases_the_flow_and_an_unmarked_one_blames_it(tmp_path, marked):
    ledger = str(tmp_path / "ledger")
    marks = KillMarks(tmp_path / "marks")

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=1,
                              harness_kills=marks) as sup:
            flow_id = await sup.schedule(LedgerFlow("k", ledger, "hang-once:1"), "k")
            await wait_until_async(lambda: _in_step(ledger, 1), what="step 1 to start")
            victim = sup.pids()["worker-0"]
            if marked:
                marks.mark(victim)
            os.kill(victim, signal.SIGKILL)
            assert await sup.result(flow_id, timeout=60) == expected("k")
            flow = await sup.client.get_flow(flow_id)
            history = [e.kind for e in await sup.client.load_history(flow_id)]
            if marked:
                assert flow.crashes == () and "released" in history and "crashed" not in history
                assert not os.path.exists(marks.directory / str(victim))  # the mark was taken
                assert sup.snapshot().crashes == 0
            else:
                assert flow.blamed == 1 and "crashed" in history, flow.crashes
                assert sup.snapshot().crashes == 1

    run(body(), 120)


async def _in_step(ledger: str, position: int) -> bool:
    return position in starts(await asyncio.to_thread(read_ledger, ledger)).get("k", [])
