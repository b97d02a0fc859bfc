"""Cron schedules: a flow started at every tick of a cron expression, by the running supervisor.

    python examples/schedules.py     (a report every second for three seconds, then paused)

Every supervisor on a store fires the due ticks; each tick's flow id is NAME@TIME, so however
many supervisors run, each tick starts one flow. See docs/schedules.md.
"""

import asyncio
import itertools
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# The worker processes import this module by name: put the repository on the path they inherit.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ergon_actors import flow, flow_type, ops, step
from ergon_actors.runtime import Supervisor
from ergon_actors.storage import open_store


@dataclass
@flow_type
class SalesReport:
    region: str

    @step
    async def build(self) -> str:
        return f"sales report for {self.region}"

    @flow
    async def run(self) -> str:
        return await self.build()


async def reports(store) -> list:
    page = await ops.list_flows(store, ops.FlowFilter(id_contains="sales@"), newest_first=False, limit=100)
    return sorted(page.flows, key=lambda f: f.flow_id)


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/reports.db"
        store = await open_store(url)
        try:
            # six fields: seconds first. "0 6 * * 1-5" would be 06:00 UTC on weekdays.
            await ops.create_schedule(store, SalesReport("north"), "* * * * * *", name="sales", missed="skip")
            async with Supervisor("examples.schedules", store=url, workers=1):
                while sum(f.status == "COMPLETE" for f in await reports(store)) < 3:
                    await asyncio.sleep(0.1)
            paused = await ops.pause_schedule(store, "sales")
            started = await reports(store)
            ticks = [datetime.fromisoformat(f.flow_id.split("@")[1]) for f in started]  # sales@2026-01-31T06:00:07Z
            one_a_second = all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(ticks))
            print(f"at least 3 flows, one a second: {len(started) >= 3 and one_a_second}")
            print(f"each returned: {sorted({f.value for f in started if f.status == 'COMPLETE'})}")
            print(f"schedule {paused.name!r} paused: {paused.paused}")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
