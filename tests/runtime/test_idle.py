"""An idle pool costs (almost) nothing: workers sleep until the next flow is due instead of
polling every 50 ms, and still see work written by another process, which cannot wake them."""

import os
import time

import pytest

from ergon_actors import Scheduler, SqliteExecutionLog
from ergon_actors.runtime import Supervisor
from tests.helpers import run, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WINDOW = 4.0  # seconds of idleness measured


def test_an_idle_pool_claims_about_once_a_second_and_sees_work_from_other_processes(tmp_path):
    db = f"{tmp_path}/journal.db"

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

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{db}", workers=2) as sup:
            flow_id = await sup.schedule(LedgerFlow("warm", os.devnull))
            assert await sup.result(flow_id, timeout=30) == expected("warm")
            start = time.monotonic() + 3.0  # the workers' backoff has reached its ceiling by then
            before = await journal_commands(sup, start)
            after = await journal_commands(sup, start + WINDOW)
            # polling every 50 ms, two workers sent 20 claims a second each (160 in the window);
            # idle, each sends a claim and a next-due query about once a second
            assert after - before < 40, f"{after - before} journal commands in {WINDOW}s of idleness"

            # another process writes a flow straight into the file: no wake reaches the workers,
            # their idle sleep is bounded, so it still runs
            other = await SqliteExecutionLog(db).connect()
            try:
                written = await Scheduler(other).schedule(LedgerFlow("outside", os.devnull), "outside")
            finally:
                await other.close()
            assert await sup.result(written, timeout=30) == expected("outside")

    run(body(), 100)
