"""A 3-step flow run by the in-process Executor on a SQLite file; killed mid-step by the test.

    python -m tests.executor.crash_script DB LEDGER    (ERGON_TEST_HANG=1: step 1 hangs)
"""

import asyncio
import os
import sys
from dataclasses import dataclass

from ergon_actors import Executor, flow, flow_type, step
from ergon_actors.storage.sqlite import SqliteExecutionLog
from tests.helpers import note


@dataclass
@flow_type
class CrashFlow:
    ledger: str

    @step
    async def one(self) -> str:
        note(self.ledger, "crash", 0, "start")
        return "one"

    @step
    async def two(self, previous: str) -> str:
        note(self.ledger, "crash", 1, "start")
        if os.environ.get("ERGON_TEST_HANG") == "1":
            await asyncio.sleep(3600)
        return previous + "|two"

    @step
    async def three(self, previous: str) -> str:
        note(self.ledger, "crash", 2, "start")
        return previous + "|three"

    @flow
    async def run(self) -> str:
        return await self.three(await self.two(await self.one()))


async def main(db: str, ledger: str) -> None:
    store = await SqliteExecutionLog(db).connect()
    outcome = await Executor(CrashFlow(ledger), store, "crash-1").run()
    print(f"{outcome.status} {outcome.result}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
