"""Flows for scripts/bench.py. The supervisor's workers import this module as `bench_flows`.

Noop: `steps` no-op steps. Blocker: step 2 blocks forever on its first run (it leaves
`<marker_dir>/<key>.started`) and returns at once on its re-run, after writing the time it
started to `<marker_dir>/<key>.resumed`.
"""

import asyncio
import os
import time
from dataclasses import dataclass

from ergon_actors import flow, flow_type, step


@dataclass
@flow_type
class Noop:
    steps: int = 3

    @step
    async def work(self, i: int) -> int:
        return i

    @flow
    async def run(self) -> int:
        for i in range(self.steps):
            await self.work(i)
        return self.steps


@dataclass
@flow_type
class Blocker:
    key: str
    marker_dir: str

    @step
    async def first(self) -> int:
        return 1

    @step
    async def block(self) -> int:
        started = os.path.join(self.marker_dir, f"{self.key}.started")
        if not os.path.exists(started):
            open(started, "w").close()
            await asyncio.sleep(3600)  # the bench kills this worker now
        now = time.time()
        resumed = os.path.join(self.marker_dir, f"{self.key}.resumed")
        with open(resumed + ".tmp", "w") as f:
            f.write(repr(now))
        os.replace(resumed + ".tmp", resumed)
        return 2

    @step
    async def last(self) -> int:
        return 3

    @flow
    async def run(self) -> int:
        await self.first()
        await self.block()
        return await self.last()
