"""Flows the runtime tests run in worker processes. Behaviour is chosen by the flow's `mode`.

    ""                   every step returns at once
    "sleep:S"            every step sleeps S seconds
    "hang-once:P"        step P hangs the first time it runs (until killed), returns the next time
    "late-once:P:S"      step P sleeps S seconds the first time it runs
    "exit:P"             step P kills its worker process (exit code 1) every time
"""

import asyncio
import os
from dataclasses import dataclass

from ergon_actors import flow, flow_type, step
from tests.helpers import note


@dataclass
@flow_type
class LedgerFlow:
    key: str
    ledger: str
    mode: str = ""
    steps: int = 3

    @step
    async def work(self, position: int) -> str:
        note(self.ledger, self.key, position, "start")
        await self._behave(position)
        note(self.ledger, self.key, position, "end")
        return f"{self.key}-{position}"

    async def _behave(self, position: int) -> None:
        kind, _, rest = self.mode.partition(":")
        if kind == "sleep":
            await asyncio.sleep(float(rest))
        elif kind in ("hang-once", "late-once") and int(rest.split(":")[0]) == position:
            marker = f"{self.ledger}.{self.key}.{position}.ran"
            if not os.path.exists(marker):
                open(marker, "w").close()
                await asyncio.sleep(3600 if kind == "hang-once" else float(rest.split(":")[1]))
        elif kind == "exit" and int(rest) == position:
            os._exit(1)

    @flow
    async def run(self) -> str:
        results = []
        for position in range(self.steps):
            results.append(await self.work(position))
        return "|".join(results)


def expected(key: str, steps: int = 3) -> str:
    return "|".join(f"{key}-{i}" for i in range(steps))
