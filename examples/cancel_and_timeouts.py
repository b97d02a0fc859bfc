"""Timeouts and cancellation: a step that hangs times out; a waiting flow is cancelled."""

import asyncio
from dataclasses import dataclass

from ergon_actors import Scheduler, Worker, await_external_signal, flow, flow_type, step
from ergon_actors.storage.sqlite import SqliteExecutionLog


@dataclass
@flow_type
class Report:
    @step(timeout=0.5)
    async def render(self) -> str:
        await asyncio.sleep(10)  # a stuck dependency
        return "never"

    @flow(timeout=60)
    async def run(self) -> str:
        return await self.render()


@dataclass
@flow_type
class Approval:
    request_id: str

    @flow
    async def run(self) -> str:
        return await await_external_signal(f"approve-{self.request_id}")


async def main() -> None:
    storage = await SqliteExecutionLog.in_memory()
    worker = Worker(storage, "worker-1")
    await worker.register(Report)
    await worker.register(Approval)
    handle = await worker.start()
    scheduler = Scheduler(storage)

    report = await storage.wait_for_completion(await scheduler.schedule(Report()), timeout=10)
    print(f"report: {report.status}: {report.error.type_name}: {report.error.message}")

    approval = await scheduler.schedule(Approval("R-1"))
    while (await storage.get_flow(approval)).status != "SUSPENDED":
        await asyncio.sleep(0.05)
    print(f"approval: {await storage.cancel_flow(approval)}")
    await handle.shutdown()
    await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
