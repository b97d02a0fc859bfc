"""Per-step overhead of the in-process Executor, against the raw cost of a SQLite commit.

Run from the repository root:

    python scripts/bench_overhead.py              # one flow of 1000 no-op steps per store
    python scripts/bench_overhead.py --steps 200 --repeat 1

Each store runs `Executor(Noop(steps=K), store, flow_id).run()` --repeat times (fresh flow id), the
SQLite store both on its connection thread and inline (`inline=True`);
the median run is reported as microseconds per step (schedule, claim and finish included,
spread over the K steps). The floors: the same disk's cost of one sqlite3 INSERT+COMMIT in
WAL mode (stdlib sqlite3, then through aiosqlite's thread), and of one 4 KiB write+fdatasync.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)

import aiosqlite  # noqa: E402

import bench_flows  # noqa: E402
from ergon_actors import Executor, InMemoryExecutionLog, SqliteExecutionLog  # noqa: E402


async def executor_us_per_step(store, steps: int, repeat: int, tag: str) -> float:
    runs = []
    for r in range(repeat):
        t0 = time.perf_counter()
        outcome = await Executor(bench_flows.Noop(steps), store, f"{tag}-{r}").run()
        runs.append(time.perf_counter() - t0)
        if not outcome.is_complete:
            raise RuntimeError(f"{tag}: flow ended {outcome.status}")
    return statistics.median(runs) / steps * 1e6


def sqlite_commit_us(path: str, synchronous: str, n: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        payload = b"x" * 64
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (i, payload))
            db.execute("COMMIT")
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        db.close()


async def aiosqlite_commit_us(path: str, synchronous: str, n: int) -> float:
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute(f"PRAGMA synchronous = {synchronous}")
        await db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        payload = b"x" * 64
        t0 = time.perf_counter()
        for i in range(n):
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO t VALUES (?, ?)", (i, payload))
            await db.execute("COMMIT")
        return (time.perf_counter() - t0) / n * 1e6


def fdatasync_us(path: str, n: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        block = b"x" * 4096
        t0 = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, block, i * 4096)
            os.fdatasync(fd)
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        os.close(fd)


async def main_async(a, tmp: str) -> list[tuple[str, float]]:
    rows = []
    store = InMemoryExecutionLog()
    rows.append(("Executor, in-memory store", await executor_us_per_step(store, a.steps, a.repeat, "mem")))
    for inline, how in ((False, "connection thread"), (True, "inline")):
        store = await SqliteExecutionLog(":memory:", inline=inline).connect()
        try:
            us = await executor_us_per_step(store, a.steps, a.repeat, f"sqlmem-{how}")
        finally:
            await store.close()
        rows.append((f"Executor, SQLite :memory:, {how}", us))
        for synchronous in ("FULL", "NORMAL"):
            store = await SqliteExecutionLog(os.path.join(tmp, f"executor-{synchronous}-{inline}.db"),
                                             synchronous=synchronous, inline=inline).connect()
            try:
                us = await executor_us_per_step(store, a.steps, a.repeat, synchronous)
            finally:
                await store.close()
            rows.append((f"Executor, SQLite file WAL synchronous={synchronous}, {how}", us))
    for synchronous in ("FULL", "NORMAL"):
        us = sqlite_commit_us(os.path.join(tmp, f"raw-{synchronous}.db"), synchronous, a.commits)
        rows.append((f"floor: sqlite3 INSERT+COMMIT, WAL synchronous={synchronous}", us))
    for synchronous in ("FULL", "NORMAL"):
        us = await aiosqlite_commit_us(os.path.join(tmp, f"aio-{synchronous}.db"), synchronous, a.commits)
        rows.append((f"floor: aiosqlite INSERT+COMMIT (3 awaits), WAL synchronous={synchronous}", us))
    rows.append(("floor: 4 KiB pwrite + fdatasync", fdatasync_us(os.path.join(tmp, "raw.bin"), a.commits)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="Executor per-step overhead vs SQLite commit cost")
    parser.add_argument("--steps", type=int, default=1000, help="no-op steps in the flow")
    parser.add_argument("--repeat", type=int, default=3, help="runs per store (median reported)")
    parser.add_argument("--commits", type=int, default=1000, help="commits timed for each floor")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    a = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ergon-overhead-", dir=a.dir)
    try:
        rows = asyncio.run(main_async(a, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"per-step cost, one flow of {a.steps} no-op steps (median of {a.repeat}); floors: {a.commits} commits")
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:9,.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
