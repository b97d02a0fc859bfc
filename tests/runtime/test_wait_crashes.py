"""SIGKILL a worker while a flow waits on a timer, a signal, a child, or between retries."""

import asyncio
import os
import signal
from itertools import pairwise

import pytest

from ergon_actors.runtime import Supervisor
from tests.helpers import read_ledger, run, starts, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import RetryingFlow, WaitingFlow

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def supervisor(tmp_path) -> Supervisor:
    return Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2)


async def ledger_has(ledger: str, key: str, position: int) -> bool:
    return position in starts(await asyncio.to_thread(read_ledger, ledger)).get(key, [])


def pid_of(ledger: str, key: str, position: int) -> int:
    return next(e["pid"] for e in read_ledger(ledger) if e["key"] == key and e["pos"] == position)


async def kill_worker(sup: Supervisor, pid: int) -> None:
    assert pid in sup.pids().values()
    os.kill(pid, signal.SIGKILL)
    await wait_until_async(lambda: _restarted(sup, pid), what="the killed worker to be replaced")


async def _restarted(sup: Supervisor, pid: int) -> bool:
    return pid not in sup.pids().values() and len(sup.pids()) == 3


@pytest.mark.parametrize("wait", ["timer:1.5", "signal:go", "child"])
def test_a_waiting_flow_survives_the_death_of_its_worker(tmp_path, wait):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path) as sup:
            flow_id = await sup.schedule(WaitingFlow("w", ledger, wait))
            await wait_until_async(lambda: ledger_has(ledger, "w", 0), what="step 0")
            if wait == "child":  # kill the worker running the child, mid-step
                await wait_until_async(lambda: ledger_has(ledger, "w-child", 0), what="the child")
                await kill_worker(sup, pid_of(ledger, "w-child", 0))
            else:
                await wait_until_async(lambda: _suspended(sup, flow_id), what="the flow to suspend")
                await kill_worker(sup, pid_of(ledger, "w", 0))
            if wait.startswith("signal"):
                assert await sup.send_signal("go", "payload")
            result = await sup.result(flow_id, timeout=60)
            expected = {"timer:1.5": "after timer", "signal:go": "after payload",
                        "child": "after w-child-0|w-child-1|w-child-2"}[wait]
            assert result == expected
            assert starts(read_ledger(ledger))["w"] == [0, 2]  # neither step ran twice
            if wait == "child":
                child_starts = starts(read_ledger(ledger))["w-child"]
                assert child_starts == sorted(child_starts) and set(child_starts) == {0, 1, 2}
                flows = await sup.client.list_flows()
                assert len(flows) == 2  # the child was started once
    run(body(), 100)


async def _suspended(sup: Supervisor, flow_id: str) -> bool:
    return (await sup.client.get_flow(flow_id)).status == "SUSPENDED"


def test_a_crash_between_retries_neither_resets_nor_skips_the_backoff(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path) as sup:
            flow_id = await sup.schedule(RetryingFlow("r", ledger, 2))
            await wait_until_async(lambda: _suspended(sup, flow_id), what="the first failure")
            await kill_worker(sup, pid_of(ledger, "r", 0))
            assert await sup.result(flow_id, timeout=60) == "ok after 3"
            step, = await sup.client.load_steps(flow_id)
            assert (step.status, step.tries) == ("COMPLETE", 3)
        times = [e["t"] for e in read_ledger(ledger)]
        assert len(times) == 3
        assert all(later - earlier >= 0.99 for earlier, later in pairwise(times))
    run(body(), 100)
