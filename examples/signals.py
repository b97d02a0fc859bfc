# PyErgon's "Waiting for External Signals" snippets, with only their import lines changed,
# completed into a program: the manager approves DOC-001 two seconds after it starts waiting.
import asyncio
import pickle
from dataclasses import dataclass
from ergon_actors import flow, flow_type, step, Scheduler, Worker
from ergon_actors.storage.sqlite import SqliteExecutionLog
from ergon_actors.executor.signal import await_external_signal, InMemorySignalSource


@dataclass
class Decision:
    approved: bool
    reason: str


class ManagerRejectionError(Exception):
    pass


@dataclass
@flow_type
class DocumentApprovalFlow:
    document_id: str

    @step
    async def validate_document(self):
        print(f"[{self.document_id}] validated")

    @step
    async def publish_document(self):
        print(f"[{self.document_id}] published")

    @flow
    async def process(self):
        await self.validate_document()

        # Suspend until manager approves
        decision = await self.await_manager_approval()

        if not decision.approved:
            raise ManagerRejectionError(decision.reason)

        await self.publish_document()
        return "approved"

    @step
    async def await_manager_approval(self):
        signal_name = f"manager_approval_{self.document_id}"
        decision_bytes = await await_external_signal(signal_name)
        return pickle.loads(decision_bytes)


async def main():
    storage = await SqliteExecutionLog.in_memory()
    signal_source = InMemorySignalSource()

    worker = Worker(storage, "worker-1")
    worker = worker.with_signals(signal_source, poll_interval=0.5)
    await worker.register(DocumentApprovalFlow)
    handle = await worker.start()

    task_id = await Scheduler(storage).schedule(DocumentApprovalFlow("DOC-001"))
    await asyncio.sleep(2)  # the manager takes a while; the flow waits suspended meanwhile
    print(f"flow is {(await storage.get_flow(task_id)).status} while it waits")

    # Later, from webhook or API:
    decision_data = pickle.dumps(Decision(approved=True, reason="looks good"))
    await signal_source.send_signal("manager_approval_DOC-001", decision_data)

    record = await storage.wait_for_completion(task_id, timeout=10)
    print(f"Result: {record.value}")
    await handle.shutdown()
    await storage.close()


asyncio.run(main())
