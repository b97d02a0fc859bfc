"""Orders under chaos: a small deterministic flow type and the factory the chaos harness calls.

    python -m ergon_actors chaos examples.chaos_orders --flows 200 --seed 1

Each step records its run in the side-effect ledger first (`ledger.record()`, a no-op outside a
chaos run), then takes a little time, as a call to another service would, so that faults land
in the middle of steps. Results depend only on the flow's fields: a run under faults must end
with exactly the results of a fault-free run.
"""

import asyncio
import random
from dataclasses import dataclass

from ergon_actors import flow, flow_type, step
from ergon_actors.testing import ledger


@dataclass
@flow_type
class ChaosOrder:
    order_id: str
    items: int         # parcels packed one step each
    unit_cents: int
    latency: float     # seconds each step takes

    @step
    async def reserve(self) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"R-{self.order_id}"

    @step
    async def charge(self, reservation: str) -> dict:
        ledger.record()
        await asyncio.sleep(self.latency)
        return {"reservation": reservation, "cents": self.items * self.unit_cents}

    @step
    async def pack(self, parcel: int) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"{self.order_id}/parcel-{parcel}"

    @step
    async def ship(self, parcels: list[str]) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"T-{self.order_id}-{len(parcels)}"

    @flow
    async def run(self) -> dict:
        receipt = await self.charge(await self.reserve())
        parcels = [await self.pack(i) for i in range(self.items)]
        tracking = await self.ship(parcels)
        return {"order": self.order_id, "cents": receipt["cents"], "parcels": parcels, "tracking": tracking}


def chaos_flows(n: int, seed: int) -> list[ChaosOrder]:
    """The contract of `python -m ergon_actors chaos`: n flow instances, the same for the same seed."""
    rng = random.Random(seed)
    return [ChaosOrder(f"order-{i}", items=rng.randint(1, 4), unit_cents=rng.randint(100, 9_999),
                       latency=round(rng.uniform(0.1, 0.4), 3)) for i in range(n)]
