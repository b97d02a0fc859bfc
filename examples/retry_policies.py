# PyErgon's "Retry Policies" snippet, with only its import lines changed, completed into a
# program: the inventory API times out twice and is retried; a missing item fails at once.
import asyncio
from dataclasses import dataclass
from ergon_actors import flow, flow_type, step, Scheduler, Worker
from ergon_actors.core import RetryPolicy, RetryableError
from ergon_actors.storage.sqlite import SqliteExecutionLog

calls = {"inventory": 0}


class ApiTimeoutError(RetryableError):
    def is_retryable(self) -> bool:
        return True  # Will be retried

class ItemNotFoundError(RetryableError):
    def is_retryable(self) -> bool:
        return False  # Fails immediately


@dataclass
@flow_type
class OrderProcessor:
    item: str

    @step
    async def check_inventory(self):
        calls["inventory"] += 1
        if self.item == "missing":
            raise ItemNotFoundError(f"no such item: {self.item}")
        if calls["inventory"] < 3:
            raise ApiTimeoutError(f"inventory API timed out (call {calls['inventory']})")
        return 5

    @step
    async def process_payment(self):
        return f"paid for {self.item}"

    @flow(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.2))
    async def process_order(self):
        await self.check_inventory()  # Retries on ApiTimeoutError
        return await self.process_payment()   # Fails fast on ItemNotFoundError


async def main():
    storage = await SqliteExecutionLog.in_memory()
    worker = Worker(storage, "worker-1")
    await worker.register(OrderProcessor)
    handle = await worker.start()
    scheduler = Scheduler(storage)
    for item in ("book", "missing"):
        record = await storage.wait_for_completion(await scheduler.schedule(OrderProcessor(item)), timeout=10)
        outcome = record.value if record.status == "COMPLETE" else f"{record.error.type_name}: {record.error.message}"
        print(f"{item}: {record.status} after {record.attempt} attempt(s): {outcome}")
    await handle.shutdown()
    await storage.close()


asyncio.run(main())
