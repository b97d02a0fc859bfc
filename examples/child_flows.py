# PyErgon's "Child Flow Invocation" snippet, with only its import lines changed, completed into
# a program: OrderFlow invokes PaymentFlow as a child flow and awaits its result.
import asyncio
from dataclasses import dataclass
from ergon_actors import flow, flow_type, step, Scheduler, Worker
from ergon_actors.core import RetryPolicy
from ergon_actors.storage.sqlite import SqliteExecutionLog


@dataclass
@flow_type(invokable=str)
class PaymentFlow:
    order_id: str
    amount: float

    @step
    async def charge_card(self):
        print(f"[{self.order_id}] charging ${self.amount}")

    @flow(retry_policy=RetryPolicy.STANDARD)
    async def process(self):
        await self.charge_card()
        return f"PAYMENT-{self.order_id}"


@dataclass
@flow_type
class OrderFlow:
    order_id: str
    amount: float

    @step
    async def validate_order(self):
        print(f"[{self.order_id}] validated")

    @flow
    async def process(self):
        await self.validate_order()

        # Invoke child flow and await result
        payment_flow = PaymentFlow(self.order_id, self.amount)
        payment_id = await self.invoke(payment_flow).result()

        return f"Order complete: {payment_id}"


async def main():
    storage = await SqliteExecutionLog.in_memory()
    worker = Worker(storage, "worker-1")
    await worker.register(OrderFlow)
    await worker.register(PaymentFlow)
    handle = await worker.start()
    task_id = await Scheduler(storage).schedule(OrderFlow("ORD-7", 42.0))
    record = await storage.wait_for_completion(task_id, timeout=10)
    print(f"Result: {record.value}")
    await handle.shutdown()
    await storage.close()


asyncio.run(main())
