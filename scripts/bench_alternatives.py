"""The bench's workload (N flows of K no-op steps) on other durable-execution libraries.

Run by scripts/bench.py in a subprocess with a timeout, one library per run:

    python scripts/bench_alternatives.py pyergon --flows 3000 --steps 3 --dir /tmp/x
    python scripts/bench_alternatives.py pyergon-shared --flows 3000 --steps 3 --dir /tmp/x
    python scripts/bench_alternatives.py dbos --flows 3000 --steps 3 --dir /tmp/x

BENCH_ALT_LOG=WARNING shows the library's own log (otherwise only counted).

Prints one JSON line: {"name", "flows", "steps", "seconds", "flows_per_s", "error", "setup"}.
Needs `pip install pyergon dbos` in the interpreter that runs it (see bench.py --alt-python).

- pyergon: two Workers in this process on one SQLite file, which PyErgon opens in WAL mode
  with synchronous=NORMAL; the workers start first, then the flows are scheduled one by one.
  "pyergon": a connection per worker; "pyergon-shared": both share one connection. Steps are
  distinct methods (PyErgon keys a step by its method name). No concurrency limit: PyErgon
  0.8.1's with_max_concurrent_flows leaks its permits (a worker stalls after that many flows).
- dbos: DBOS on its SQLite default (sqlite:///<dir>/dbos.sqlite: rollback journal,
  synchronous FULL); workflows enqueued on a queue (worker_concurrency = --concurrency,
  polling 10 ms) that this process's queue thread runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass

MAX_STEPS = 64


def query(db: str, sql: str) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def count(db: str, sql: str) -> int:
    return query(db, sql)[0][0]


class ErrorCounter(logging.Handler):
    """Counts the library's ERROR log records, by message, to say why a run failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.locked = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.errors += 1
        self.locked += "database is locked" in record.getMessage()


STALL = 10.0


async def wait_count(db: str, sql: str, n: int, timeout: float, stall: float | None = None,
                     poll: float = 0.01, states: str = "") -> None:
    """Poll until `sql` counts n; fail after `timeout` s, or `stall` s without progress."""
    stall = STALL if stall is None else stall
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        done = await asyncio.to_thread(count, db, sql)
        if done >= n:
            return
        now = time.monotonic()
        if done != last:
            last, moved = done, now
        if now > deadline or now - moved > stall:
            why = f"after {timeout:.0f}s" if now > deadline else f"no progress for {stall:.0f}s"
            by_state = dict(await asyncio.to_thread(query, db, states)) if states else "?"
            raise TimeoutError(f"{done}/{n} complete, {why}; states {by_state}")
        await asyncio.sleep(poll)


# -- PyErgon ---------------------------------------------------------------------------------

def _pyergon_flow_class():
    from pyergon import flow, flow_type, step

    async def run(self) -> int:
        for i in range(self.steps):
            await getattr(self, f"s{i}")()
        return self.steps

    def make_step(i):
        async def body(self) -> int:
            return i
        body.__name__ = body.__qualname__ = f"s{i}"
        return step(body)

    namespace = {"__annotations__": {"steps": int}, "steps": 3, "__module__": __name__,
                 "run": flow(run)}
    namespace.update({f"s{i}": make_step(i) for i in range(MAX_STEPS)})
    return dataclass(flow_type(type("PNoop", (), namespace)))


async def bench_pyergon(n: int, k: int, work_dir: str, concurrency: int, timeout: float,
                        shared: bool = False) -> dict:
    """Two Workers started first, then n flows scheduled one by one, timed until all complete."""
    global PNoop
    from pyergon import Scheduler, SqliteExecutionLog, Worker

    PNoop = _pyergon_flow_class()  # module-level name: workers unpickle flows from here
    errors = ErrorCounter()
    logger = logging.getLogger("pyergon")
    logger.setLevel(min(logger.getEffectiveLevel(), logging.ERROR))
    logger.propagate = "BENCH_ALT_LOG" in os.environ  # else only counted, not printed
    logger.addHandler(errors)
    db = os.path.join(work_dir, "pyergon.db")
    stores = [SqliteExecutionLog(db) for _ in range(1 if shared else 3)]
    for store in stores:
        await store.connect()
    handles = []
    try:
        workers = []
        for i in range(2):
            store = stores[0] if shared else stores[1 + i]
            # Not .with_max_concurrent_flows(concurrency): in 0.8.1 its permits are never released
            # (Worker._execute_flow only holds a reference), so each worker stops after that many flows.
            worker = Worker(store, f"pyergon-{i}").with_poll_interval(0.05)
            await worker.register(PNoop)
            workers.append(worker)
        handles = [await w.start() for w in workers]
        scheduler = Scheduler(stores[0]).unversioned()
        t0 = time.perf_counter()
        for _ in range(n):
            await scheduler.schedule(PNoop(k))
        try:
            await wait_count(db, "SELECT count(*) FROM flow_queue WHERE status = 'COMPLETE'", n, timeout,
                             states="SELECT status, count(*) FROM flow_queue GROUP BY status")
        except TimeoutError as exc:
            if errors.locked:
                raise RuntimeError(f"database is locked ({errors.locked} of {errors.errors} errors logged); "
                                   f"{exc}") from None
            raise
        seconds = time.perf_counter() - t0
        failed = count(db, "SELECT count(*) FROM flow_queue WHERE status = 'FAILED'")
        error = f"{failed} flows FAILED" if failed else None
        if errors.errors:
            error = f"{error or 'all complete'}; {errors.errors} errors logged ({errors.locked} database is locked)"
        return {"seconds": seconds, "error": error}
    finally:
        for handle in handles:
            await handle.shutdown()
        for store in stores:
            await store.close()


async def bench_pyergon_shared(n: int, k: int, work_dir: str, concurrency: int, timeout: float) -> dict:
    return await bench_pyergon(n, k, work_dir, concurrency, timeout, shared=True)


# -- DBOS ------------------------------------------------------------------------------------

async def bench_dbos(n: int, k: int, work_dir: str, concurrency: int, timeout: float) -> dict:
    from dbos import DBOS

    @DBOS.step()
    async def noop_step(i: int) -> int:
        return i

    @DBOS.workflow()
    async def noop_flow(steps: int) -> int:
        for i in range(steps):
            await noop_step(i)
        return steps

    db = os.path.join(work_dir, "dbos.sqlite")
    DBOS(config={"name": "ergon-bench", "system_database_url": f"sqlite:///{db}", "log_level": "WARNING"})
    try:
        DBOS.launch()
        queue = await DBOS.register_queue_async("bench", worker_concurrency=concurrency,
                                                polling_interval_sec=0.01)
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            await asyncio.gather(*(queue.enqueue_async(noop_flow, k) for _ in range(start, min(n, start + 500))))
        await wait_count(db, "SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS'", n, timeout,
                         states="SELECT status, count(*) FROM workflow_status GROUP BY status")
        seconds = time.perf_counter() - t0
        failed = count(db, "SELECT count(*) FROM workflow_status WHERE status = 'ERROR'")
        return {"seconds": seconds, "error": f"{failed} workflows ERROR" if failed else None}
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=0)


BENCHES = {"pyergon": bench_pyergon, "pyergon-shared": bench_pyergon_shared, "dbos": bench_dbos}
SETUPS = {"pyergon": "2 Workers in one process, one connection each, SQLite WAL synchronous=NORMAL, "
                     "no concurrency limit",
          "pyergon-shared": "2 Workers in one process, sharing one connection, SQLite WAL synchronous=NORMAL, "
                            "no concurrency limit",
          "dbos": "DBOS queue in one process, SQLite default (rollback journal, synchronous FULL), polling 10 ms"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("--flows", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--stall", type=float, default=10.0, help="give up after this long without progress")
    parser.add_argument("--dir", required=True)
    a = parser.parse_args()
    global STALL
    STALL = a.stall
    if a.steps > MAX_STEPS:
        parser.error(f"--steps at most {MAX_STEPS}")
    logging.basicConfig(level=os.environ.get("BENCH_ALT_LOG", "CRITICAL"))
    out = {"name": a.name, "flows": a.flows, "steps": a.steps, "seconds": None, "flows_per_s": None,
           "error": None, "setup": SETUPS[a.name]}
    try:
        out.update(asyncio.run(BENCHES[a.name](a.flows, a.steps, a.dir, a.concurrency, a.timeout)))
        if out["seconds"]:
            out["flows_per_s"] = a.flows / out["seconds"]
    except ImportError as exc:
        out["error"] = f"not installed: {exc}"
    except BaseException as exc:  # report any failure as the result, never a traceback
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        traceback.print_exc(file=sys.stderr)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
