"""The demo: 300 orders on a supervised pool; one worker is SIGKILLed mid-run and nothing is lost.

    python -m examples.demo            (from the repository root; store: ergon-demo.db)

Every step body appends a line to a ledger file; at the end the demo checks, from the ledger
and the journal, that every order completed and that no step ran again after its result was
journaled (a step cut by the kill runs again, which is the at-least-once promise).
"""

import asyncio
import json
import os
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass

from ergon_actors import flow, flow_type, step
from ergon_actors.runtime import Supervisor

STORE = os.environ.get("ERGON_STORE", "sqlite:///ergon-demo.db")


@dataclass
@flow_type
class DemoOrder:
    order_id: str
    amount: float
    ledger: str

    def _note(self, position: int) -> None:
        with open(self.ledger, "a") as f:
            f.write(json.dumps([self.order_id, position]) + "\n")

    @step
    async def reserve(self) -> str:
        self._note(0)
        return f"R-{self.order_id}"

    @step
    async def charge(self, reservation: str) -> str:
        self._note(1)
        await asyncio.sleep(0.2)  # a slow payment API: the kill lands here
        return f"C-{self.order_id}-{self.amount:.2f}"

    @step
    async def ship(self, receipt: str) -> str:
        self._note(2)
        return f"shipped {self.order_id} ({receipt})"

    @flow
    async def run(self) -> str:
        return await self.ship(await self.charge(await self.reserve()))


def _lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


async def main(orders: int = 300) -> int:
    ledger = os.path.join(tempfile.mkdtemp(prefix="ergon-demo-"), "ledger")
    run_id = f"{int(time.time())}"
    print(f"store {STORE}; starting a supervisor with 2 worker processes")
    async with Supervisor("examples.demo", store=STORE, workers=2, concurrency=64) as sup:
        started = time.perf_counter()
        ids = [await sup.schedule(DemoOrder(f"{run_id}-{i}", 10.0 + i, ledger), f"demo-{run_id}-{i}")
               for i in range(orders)]
        print(f"scheduled {orders} orders")
        while _lines(ledger) < orders:  # about a third of the steps have run
            await asyncio.sleep(0.05)
        victim, pid = next(iter(sup.pids().items() - {("journal", sup.pids()["journal"])}))
        os.kill(pid, signal.SIGKILL)
        print(f"SIGKILLed {victim} (pid {pid}) in the middle of its steps")
        results = [await sup.result(flow_id, timeout=120) for flow_id in ids]
        elapsed = time.perf_counter() - started
        restarts = sup.snapshot().restarts
    runs = defaultdict(list)
    with open(ledger) as f:
        for line in f:
            order_id, position = json.loads(line)
            runs[order_id].append(position)
    rerun = sum(len(p) - 3 for p in runs.values())
    broken = [o for o, p in runs.items() if p != sorted(p) or set(p) != {0, 1, 2}]
    print(f"{len(results)} orders completed in {elapsed:.1f}s; e.g. {results[0]!r}")
    print(f"worker restarts: {restarts}; steps run again because the kill cut them: {rerun}")
    print(f"completed steps that ran twice: {len(broken)}")
    return 0 if not broken and len(results) == orders else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
