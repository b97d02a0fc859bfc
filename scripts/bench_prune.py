"""Retention on a big SQLite store: `status` counts before and after pruning, the prune's speed,
and the file's size before and after.

Run from the repository root:

    python scripts/bench_prune.py                  # 1,000,000 flows
    python scripts/bench_prune.py --flows 100000 --repeat 5

The store gets --flows flows (each with its history: scheduled, then cancelled), of which 95 in
100 ended; the file is then aged as if the ended ones had ended 40 days ago (an UPDATE of their
times, the one thing done to the file outside the store), except the last twentieth of them by
flow id, which ended now. Timed (median of --repeat, milliseconds): count_flows() (what `status`
shows: the counts by status and the flows due now, which walks the live flows' index entries),
the counts by status alone (the table the triggers keep), the same counts as a GROUP BY scan of
the flows (what they cost before the triggers), and `python -m ergon_actors status` end to end
(a new process: imports, opening the store, counts, listing the running flows). Then `prune
--older-than 30d`, the same timings after it, and the file's size before and after (after a WAL
checkpoint). Nothing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ergon_actors import ops  # noqa: E402
from ergon_actors.storage import open_store  # noqa: E402
from ergon_actors.storage.commands import CancelFlow, ScheduleFlow  # noqa: E402

BATCH = 5000
AGE = 40 * 86400.0


async def fill(url: str, flows: int) -> None:
    store = await open_store(url, synchronous="OFF")
    try:
        for start in range(0, flows, BATCH):
            await store.execute([ScheduleFlow(f"flow-{i:07}", "Order", b"\x80" * 40)
                                 for i in range(start, min(start + BATCH, flows))])
        ended = [f"flow-{i:07}" for i in range(flows) if i % 20 != 0]
        for start in range(0, len(ended), BATCH):
            await store.execute([CancelFlow(i) for i in ended[start:start + BATCH]])
    finally:
        await store.close()


def age(path: str, flows: int) -> None:
    """Move the times of all but the last twentieth of the ended flows 40 days back."""
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE flows SET created_at = created_at - ?, updated_at = updated_at - ? "
                   "WHERE status = 'CANCELLED' AND flow_id < ?", (AGE, AGE, f"flow-{flows * 19 // 20:07}"))
        db.execute("UPDATE events SET at = at - ? WHERE flow_id < ?", (AGE, f"flow-{flows * 19 // 20:07}"))
    db.close()


def size(path: str) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


async def timings(url: str, path: str, repeat: int) -> dict[str, float]:
    store = await open_store(url)
    out: dict[str, float] = {}
    try:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            counts = await store.count_flows()
            samples.append(time.perf_counter() - started)
        out["count_flows() ms"] = statistics.median(samples) * 1000
        out["flows"] = sum(v for k, v in counts.items() if k not in ("due", "quarantined"))
    finally:
        await store.close()
    db = sqlite3.connect(path)
    for name, sql in (("by status (flow_counts) ms", "SELECT status, n FROM flow_counts"),
                      ("GROUP BY scan ms", "SELECT status, count(*) FROM flows GROUP BY status")):
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            db.execute(sql).fetchall()
            samples.append(time.perf_counter() - started)
        out[name] = statistics.median(samples) * 1000
    db.close()
    samples = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ERGON_STORE": url}
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ergon_actors", "status"], env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    out["`status` process ms"] = statistics.median(samples) * 1000
    return out


async def prune(url: str) -> tuple[int, float]:
    store = await open_store(url)
    try:
        started = time.perf_counter()
        deleted = await ops.prune_flows(store, 30 * 86400.0)
        return deleted, time.perf_counter() - started
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/prune.db"
        url = f"sqlite:///{path}"
        started = time.perf_counter()
        await fill(url, args.flows)
        age(path, args.flows)
        print(f"filled {args.flows} flows in {time.perf_counter() - started:.0f}s; "
              f"load average {os.getloadavg()[0]:.1f}")
        before = size(path)
        print("before prune:", {k: round(v, 1) for k, v in (await timings(url, path, args.repeat)).items()})
        deleted, took = await prune(url)
        print(f"prune --older-than 30d: deleted {deleted} flows in {took:.1f}s ({deleted / took:.0f} flows/s)")
        after = size(path)
        print("after prune:", {k: round(v, 1) for k, v in (await timings(url, path, args.repeat)).items()})
        print(f"file: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after; "
              f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
