"""Retention: ended flows deleted once they are old enough, by hand (prune) or as a supervisor runs.

    python examples/retention.py

See docs/retention.md.
"""

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The worker processes import this module by name: put the repository on the path they inherit.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ergon_actors import flow, flow_type, ops, step
from ergon_actors.runtime import Supervisor
from ergon_actors.storage import open_store


@dataclass
@flow_type
class Invoice:
    number: int

    @step
    async def send(self) -> str:
        return f"invoice {self.number} sent"

    @flow
    async def run(self) -> str:
        return await self.send()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/invoices.db"
        store = await open_store(url)
        try:
            async with Supervisor("examples.retention", store=url, workers=1) as sup:
                ids = [await sup.schedule(Invoice(n)) for n in range(20)]
                for flow_id in ids:
                    await sup.result(flow_id, timeout=60)
            print(f"complete: {(await store.count_flows())['COMPLETE']}")
            # by hand: every flow that ended more than 0 s ago (the command line: prune --older-than 30d)
            print(f"pruned: {await ops.prune_flows(store, older_than=0, statuses=('COMPLETE',))}")
            print(f"complete after prune: {(await store.count_flows()).get('COMPLETE', 0)}")
            # as it runs: a supervisor whose journal deletes flows 1 s after they ended
            # (the command line: run --retention 30d, or ERGON_RETENTION=30d)
            async with Supervisor("examples.retention", store=url, workers=1, retention=1.0) as sup:
                print(await sup.result(await sup.schedule(Invoice(99), "invoice-99"), timeout=60))
                while await store.get_flow("invoice-99") is not None:  # gone a second or two after it ended
                    await asyncio.sleep(0.1)
            print("invoice-99 deleted by the retention setting")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
