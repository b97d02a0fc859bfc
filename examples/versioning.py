"""Deploying new flow code while flows run: a patch, version-pinned workers, and a migration.

    python examples/versioning.py

Version 1 ships parcels by post. Version 2 adds a fraud check before packing, behind
patched("fraud-check"). Two workers, one per version, share one store (blue/green): each runs
only the flows that started on its code. Then the operator moves version 1's waiting flow to
version 2, whose patch lets it replay the old branch.
"""

import asyncio
import tempfile
from dataclasses import dataclass

from ergon_actors import (Scheduler, SqliteExecutionLog, Worker, await_external_signal, codec, flow, flow_type,
                          patched, step)


@dataclass
@flow_type(name="Parcel")
class ParcelV1:
    """The code of version 1."""

    order: str

    @step
    async def pack(self) -> str:
        return "packed"

    @step
    async def ship(self) -> str:
        return "shipped"

    @flow
    async def run(self) -> str:
        done = [await self.pack()]
        await await_external_signal(f"truck-{self.order}")  # waits, suspended, for the truck
        done.append(await self.ship())
        return "v1: " + ", ".join(done)


@dataclass
@flow_type(name="Parcel")
class ParcelV2(ParcelV1):
    """The code of version 2: a fraud check first, for flows that reach it on this code."""

    @step
    async def check_fraud(self) -> str:
        return "checked"

    @flow
    async def run(self) -> str:
        done = []
        if await patched("fraud-check"):
            done.append(await self.check_fraud())
        done.append(await self.pack())
        await await_external_signal(f"truck-{self.order}")
        done.append(await self.ship())
        return "v2: " + ", ".join(done)


async def until_waiting(store: SqliteExecutionLog, flow_id: str) -> None:
    """Wait until the flow is suspended, waiting for its truck."""
    for _ in range(500):
        flow = await store.get_flow(flow_id)
        if flow is not None and flow.status == "SUSPENDED":
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{flow_id} never waited for its truck")


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = await SqliteExecutionLog(f"{folder}/parcels.db").connect()
        blue, green = Worker(store, "blue", version="1"), Worker(store, "green", version="2")
        await blue.register(ParcelV1)
        await green.register(ParcelV2)
        handles = [await blue.start(), await green.start()]

        # Each version schedules its own traffic; a flow runs only on workers of its version.
        await Scheduler(store).with_version("1").schedule(ParcelV1("A"), "A")
        await Scheduler(store).with_version("2").schedule(ParcelV2("B"), "B")
        await Scheduler(store).with_version("1").schedule(ParcelV1("C"), "C")
        for flow_id in "ABC":
            await until_waiting(store, flow_id)
        await store.send_signal("truck-A", codec.encode(True))
        await store.send_signal("truck-B", codec.encode(True))
        for flow_id in "AB":
            print(f"{flow_id}: {(await store.wait_for_completion(flow_id, timeout=30)).value}")

        # Version 1 is retired: its waiting flow moves to version 2, whose patch replays its old branch.
        await handles[0].shutdown()
        moved = await store.migrate_flows("2", from_version="1")
        print(f"migrated {moved} flow from version 1 to version 2")
        await store.send_signal("truck-C", codec.encode(True))
        print(f"C: {(await store.wait_for_completion('C', timeout=30)).value}")
        print("journal of C:", ", ".join(s.name for s in await store.load_steps("C")))
        await handles[1].shutdown()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
