"""Named queues: a concurrency limit, one flow per customer at a time, a rate limit, priority
and deduplication, enforced by the journal across every worker (docs/queues.md).

    python examples/queues.py            (from any directory)
"""

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The worker processes import this module by name: put the repository on sys.path (as embed.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ergon_actors import Queue, Scheduler, flow, flow_type, step
from ergon_actors.runtime import Supervisor
from ergon_actors.storage import open_store

# At most 2 emails at once across every worker, 1 per customer, 5 started in any second.
EMAILS = Queue("emails", concurrency=2, key="customer", key_concurrency=1, rate_limit=5, rate_period="1s")


@dataclass
@flow_type(queue=EMAILS)
class SendEmail:
    customer: str
    subject: str

    @step
    async def send(self) -> str:
        await asyncio.sleep(0.1)  # the mail server
        return f"sent {self.subject!r} to {self.customer}"

    @flow
    async def run(self) -> str:
        return await self.send()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/emails.db"
        async with await open_store(url) as store:  # schedule first: a backlog shows the limits at work
            scheduler = Scheduler(store)
            for customer in ("ann", "bob", "cy"):
                for n in range(3):
                    await scheduler.schedule(SendEmail(customer, f"news {n}"), f"{customer}-{n}")
            welcome = SendEmail("zoe", "welcome")
            await scheduler.schedule(welcome, "welcome-zoe", priority=10, dedup_id="welcome-zoe")
            again = await scheduler.schedule(welcome, priority=10, dedup_id="welcome-zoe")  # not ended yet
            print(f"dedup: scheduling the welcome email again returned {again}")

        async with Supervisor("examples.queues", store=url, workers=2) as sup:
            for flow_id in ["welcome-zoe"] + [f"{c}-{n}" for c in ("ann", "bob", "cy") for n in range(3)]:
                await sup.result(flow_id, timeout=60)

        async with await open_store(url) as store:
            flows = [f for f in await store.list_flows() if f.flow_type == "SendEmail"]
            history = {f.flow_id: await store.load_history(f.flow_id) for f in flows}
        # each ran once, from its claim to its completion (in the journal's own history)
        spans = {i: [(next(e.at for e in h if e.kind == "claimed"), next(e.at for e in h if e.kind == "completed"))]
                 for i, h in history.items()}
        print(f"{len(flows)} emails sent")
        print(f"at most {most_at_once([s for v in spans.values() for s in v])} at once (limit 2)")
        customers = {c: [s for i, v in spans.items() if i.startswith(c) for s in v] for c in ("ann", "bob", "cy")}
        print(f"at most {max(most_at_once(v) for v in customers.values())} per customer at once (limit 1)")
        starts = sorted((e.at, i) for i, h in history.items() for e in h if e.kind == "claimed")
        print(f"priority 10 ran in the first pair: {'welcome-zoe' in [i for _, i in starts[:2]]}")
        window = max(sum(1 for t, _ in starts[j:] if t < at + 1) for j, (at, _) in enumerate(starts))
        print(f"at most {window} started in any second (limit 5)")


if __name__ == "__main__":
    asyncio.run(main())
