"""Claim cost with named queues, on the SQLite store in one process (no supervisor).

    python scripts/bench_queues.py [--backlog 100000] [--claims 2000]

Prints the median and 95th percentile of one claim of 10 flows in three cases:
  default        only the default queue (the speed every store had before queues)
  beside backlog the default queue's claims while a named queue with concurrency 1 holds
                 `backlog` due flows back
  queue          claims of a named queue with concurrency 10 000, with `backlog` flows waiting
Each claim's flows are finished at once, so the queue's running count stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ergon_actors.core.queues import QueueLimits
from ergon_actors.storage import SqliteExecutionLog
from ergon_actors.storage.commands import ScheduleFlow


async def fill(store: SqliteExecutionLog, prefix: str, n: int, queue: str | None) -> None:
    for start in range(0, n, 5000):
        await store.execute([ScheduleFlow(f"{prefix}{i}", "T", b"\x80", queue=queue, priority=i % 3)
                             for i in range(start, min(n, start + 5000))])


async def timed_claims(store: SqliteExecutionLog, claims: int) -> list[float]:
    took = []
    for _ in range(claims):
        began = time.perf_counter()
        got = await store.claim("w", 10, 30.0, flow_types=("T",))
        took.append(time.perf_counter() - began)
        for claim in got:
            await store.finish_flow(claim.flow.flow_id, claim.flow.epoch, "COMPLETE", result=b"\xc0")
    return took


def line(case: str, took: list[float]) -> str:
    took = sorted(took)
    return (f"{case:<16} median {statistics.median(took) * 1e3:6.2f} ms   "
            f"p95 {took[int(len(took) * 0.95)] * 1e3:6.2f} ms   ({len(took)} claims of 10)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, backlog {args.backlog}")
    with tempfile.TemporaryDirectory() as folder:
        store = await SqliteExecutionLog(f"{folder}/bench.db", synchronous="NORMAL").connect()
        try:
            await fill(store, "d", args.claims * 10, None)
            print(line("default", await timed_claims(store, args.claims)))
            await store.declare_queue(QueueLimits("held", concurrency=1))
            await fill(store, "h", args.backlog, "held")
            await store.claim("holder", 1, 3600.0, flow_types=("T",))  # its one slot, taken
            await fill(store, "e", args.claims * 10, None)
            print(line("beside backlog", await timed_claims(store, args.claims)))
            await store.declare_queue(QueueLimits("open", concurrency=10_000))
            await fill(store, "o", args.backlog, "open")
            print(line("queue", await timed_claims(store, args.claims)))
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
