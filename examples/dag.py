"""DAG: independent steps run in parallel, each journaled; a dependent step waits for them."""

import asyncio
import time
from dataclasses import dataclass

from ergon_actors import DeferredRegistry, Executor, flow, flow_type, step
from ergon_actors.storage.sqlite import SqliteExecutionLog


@dataclass
@flow_type
class Checkout:
    order_id: str

    @step
    async def fetch_user(self) -> str:
        await asyncio.sleep(0.5)  # three half-second lookups...
        return "ada"

    @step
    async def check_inventory(self) -> int:
        await asyncio.sleep(0.5)
        return 3

    @step
    async def get_pricing(self) -> float:
        await asyncio.sleep(0.5)
        return 9.5

    @step
    async def validate(self, user: str, stock: int, price: float) -> str:
        return f"{self.order_id}: {user} buys 1 of {stock} at {price}"

    @flow
    async def run(self) -> str:
        registry = DeferredRegistry()
        registry.register("user", [], lambda _: self.fetch_user())
        registry.register("stock", [], lambda _: self.check_inventory())
        registry.register("price", [], lambda _: self.get_pricing())
        order = registry.register("validate", ["user", "stock", "price"],
                                  lambda i: self.validate(i["user"], i["stock"], i["price"]))
        await registry.execute()
        return await order.resolve()


async def main() -> None:
    storage = await SqliteExecutionLog.in_memory()
    started = time.perf_counter()
    outcome = await Executor(Checkout("ORD-9"), storage, "checkout-9").run()
    elapsed = time.perf_counter() - started  # ...take about 0.5 s, not 1.5 s
    print(f"Result: {outcome.result} ({elapsed:.1f}s)")
    steps = await storage.load_steps("checkout-9")
    print("journal:", ", ".join(f"{s.position}:{s.name}" for s in steps))
    await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
