"""How fast operators find flows in a big store: QueryFlows pages on 100,000 flows.

Run from the repository root:

    python scripts/bench_list.py                  # SQLite file, 100,000 flows
    python scripts/bench_list.py --redis          # also Redis (starts a redis-server of its own)
    python scripts/bench_list.py --flows 20000 --repeat 3

The store gets `--flows` flows of three types, a tenth cancelled and a hundredth running; each
query is timed --repeat times (median reported, in milliseconds): the first page (50 flows,
newest first), a page deep behind a cursor, filters by status, type, text in the id and error
type, and `python -m ergon_actors list` end to end (a new process: imports, opening the store,
the query, the table). Nothing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ergon_actors.ops import FlowFilter, list_flows  # noqa: E402
from ergon_actors.storage import LogBase, open_store  # noqa: E402
from ergon_actors.storage.commands import CancelFlow, ScheduleFlow  # noqa: E402
from ergon_actors.testing import RedisServer  # noqa: E402

BATCH = 5000


async def fill(store: LogBase, flows: int) -> None:
    types = ("Order", "Refund", "Invoice")
    for start in range(0, flows, BATCH):
        await store.execute([ScheduleFlow(f"flow-{i:07}", types[i % 3], b"\x80")
                             for i in range(start, min(start + BATCH, flows))])
    cancelled = [f"flow-{i:07}" for i in range(0, flows, 10)]
    for start in range(0, len(cancelled), BATCH):
        await store.execute([CancelFlow(i) for i in cancelled[start:start + BATCH]])
    for _ in range(max(flows // 100 // 500, 1)):
        await store.claim("bench-worker", 500, 3600.0)


async def timed(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


async def deep_cursor(store: LogBase, pages: int) -> str | None:
    cursor = None
    for _ in range(pages):
        cursor = (await list_flows(store, limit=50, cursor=cursor)).cursor
    return cursor


def cli_ms(url: str, repeat: int, *args: str) -> float:
    runs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ergon_actors", "list", "--store", url, *args], check=True,
                       capture_output=True, env=env)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


async def bench(name: str, url: str, flows: int, repeat: int) -> None:
    store = await open_store(url)
    try:
        t0 = time.perf_counter()
        await fill(store, flows)
        print(f"\n{name}: {flows:,} flows written in {time.perf_counter() - t0:.1f}s")
        deep = await deep_cursor(store, 20)
        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("first page, newest first", lambda: list_flows(store, limit=50)),
            ("first page, oldest first", lambda: list_flows(store, limit=50, newest_first=False)),
            ("page 21 (behind a cursor)", lambda: list_flows(store, limit=50, cursor=deep)),
            ("status cancelled", lambda: list_flows(store, FlowFilter(statuses=("CANCELLED",)), limit=50)),
            ("status running or pending",
             lambda: list_flows(store, FlowFilter(statuses=("RUNNING", "PENDING")), limit=50)),
            ("type Refund", lambda: list_flows(store, FlowFilter(flow_types=("Refund",)), limit=50)),
            ("text in id (rare: 11 matches)", lambda: list_flows(store, FlowFilter(id_contains="99999"), limit=50)),
            ("error type (every cancelled flow)",
             lambda: list_flows(store, FlowFilter(error_contains="Cancelled"), limit=50)),
            ("1,000 flows in one page", lambda: list_flows(store, limit=1000)),
        ]
        for label, fn in cases:
            print(f"  {label:<40} {await timed(fn, repeat):8.1f} ms")
    finally:
        await store.close()
    print(f"  {'`list` command, end to end':<40} {cli_ms(url, repeat):8.1f} ms")
    print(f"  {'`list --status failed` (none), end to end':<40} {cli_ms(url, repeat, '--status', 'failed'):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description="QueryFlows pages on a big store")
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per query (median reported)")
    parser.add_argument("--redis", action="store_true", help="also a Redis store (starts its own redis-server)")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench("SQLite (WAL, synchronous=FULL)", f"sqlite:///{folder}/list.db", args.flows, args.repeat))
        if args.redis:
            server = RedisServer(Path(folder) / "redis").start()
            try:
                asyncio.run(bench("Redis", server.url, args.flows, args.repeat))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
