"""An idle pool costs (almost) nothing: workers sleep until the next flow is due or the journal
wakes them instead of polling every 50 ms, actors beat once a second; still work written by
another process is seen, and a frozen idle actor is still killed as hung."""

import os
import signal
import time

import psutil
import pytest

from ergon_actors import Scheduler, SqliteExecutionLog
from ergon_actors.runtime import Supervisor
from tests.helpers import run, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WINDOW = 8.0  # seconds of idleness measured


def cpu_seconds(pids: list[int]) -> float:
    """The CPU time the processes used so far, summed."""
    return sum(t.user + t.system for t in (psutil.Process(p).cpu_times() for p in pids))


async def journal_commands(sup: Supervisor, after: float) -> int:
    """The journal's command count from its first heartbeat after `after` (monotonic)."""
    seen: list[int] = []

    async def fresh() -> bool:
        journal = sup.snapshot().actors[0]
        if journal.heartbeat_age is not None and time.monotonic() - journal.heartbeat_age > after:
            seen.append(sup.snapshot().journal.commands)
            return True
        return False
    await wait_until_async(fresh, what="a journal heartbeat")
    return seen[0]


def test_an_idle_pool_sends_a_poll_a_second_per_worker_and_sees_work_from_other_processes(tmp_path):
    db = f"{tmp_path}/journal.db"

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{db}", workers=2) as sup:
            flow_id = await sup.schedule(LedgerFlow("warm", os.devnull))
            assert await sup.result(flow_id, timeout=30) == expected("warm")
            start = time.monotonic() + 3.0  # the workers' backoff has reached its ceiling by then
            before = await journal_commands(sup, start)
            actors = list(sup.pids().values())
            cpu_before, clock = cpu_seconds(actors), time.monotonic()
            after = await journal_commands(sup, start + WINDOW)
            cpu = 100 * (cpu_seconds(actors) - cpu_before) / (time.monotonic() - clock)
            # polling every 50 ms, two workers sent 20 claims a second each; with a claim and a
            # next-due query a second each, 4; now the journal wakes them when work is due, and
            # they ask themselves every 20 s
            assert after - before < WINDOW, f"{after - before} journal commands in {WINDOW}s of idleness"
            # journal and workers: 1.3% of a core when they beat twice a second and polled with
            # two commands; now about 0.5% (the bound leaves room for a loaded machine)
            assert cpu < 1.0, f"the idle actors used {cpu:.2f}% of a core"

            # another process writes a flow straight into the file: no command wakes the workers,
            # the journal sees it due (within a second) and wakes them
            other = await SqliteExecutionLog(db).connect()
            try:
                written = await Scheduler(other).schedule(LedgerFlow("outside", os.devnull), "outside")
            finally:
                await other.close()
            assert await sup.result(written, timeout=30) == expected("outside")

    run(body(), 100)


def test_an_idle_worker_that_freezes_is_still_killed_as_hung(tmp_path):
    """Idle actors beat less often, never less often than half of hang_timeout: a SIGSTOPped idle
    worker is still killed as hung and replaced."""

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=1) as sup:
            await wait_until_async(lambda: _idle(sup), what="the actors to go idle")
            frozen = sup.pids()["worker-0"]
            os.kill(frozen, signal.SIGSTOP)

            async def replaced() -> bool:
                info = sup.snapshot().actors[1]
                return info.ready and info.pid != frozen
            await wait_until_async(replaced, timeout=30, what="the frozen worker's replacement")
            info = sup.snapshot().actors[1]
            assert info.exit_codes == (-9,) and info.causes == {"hang": 1}

    run(body(), 100)


async def _idle(sup: Supervisor) -> bool:
    """Both actors told their supervisor they are idle (their figures stopped moving)."""
    return all(a.idle for a in sup._actors)
