"""An inline SQLite store commits the calls of one event-loop turn together, on the loop's thread."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from ergon_actors import Scheduler, Worker, flow, flow_type, step
from ergon_actors.core import FlowStatus
from ergon_actors.errors import FlowNotFoundError, StoreUnavailableError
from ergon_actors.storage import SqliteExecutionLog
from ergon_actors.storage.commands import ClaimFlows, Scheduled

from ..helpers import run, wait_until_async

pytestmark = pytest.mark.timeout(60)


async def count_commits(log: SqliteExecutionLog) -> list[str]:
    """The COMMIT statements the store's own connection runs from now on (SQLite's trace callback)."""
    commits: list[str] = []
    await log._run(lambda db: db.set_trace_callback(
        lambda sql: commits.append(sql) if sql.startswith("COMMIT") else None))
    return commits


def flow_ids(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT flow_id FROM flows ORDER BY flow_id")]
    finally:
        db.close()


def test_calls_made_in_one_turn_share_one_commit_and_calls_in_turns_of_their_own_do_not(tmp_path):
    path = tmp_path / "store.db"

    async def body() -> tuple[int, int]:
        log = await SqliteExecutionLog(path, inline=True).connect()
        try:
            commits = await count_commits(log)
            await asyncio.gather(*(log.schedule_flow(f"f{i:02}", "Order", b"x") for i in range(50)))
            together = len(commits)
            for i in range(3):
                await log.schedule_flow(f"g{i}", "Order", b"x")
            return together, len(commits) - together
        finally:
            await log.close()

    assert run(body()) == (1, 3)
    assert flow_ids(path) == [f"f{i:02}" for i in range(50)] + ["g0", "g1", "g2"]


def test_at_once_commits_each_call_in_a_transaction_of_its_own_before_it_returns(tmp_path):
    path = tmp_path / "store.db"

    async def body() -> tuple[int, list[str]]:
        log = await SqliteExecutionLog(path, at_once=True).connect()
        try:
            commits = await count_commits(log)
            seen: list[str] = []

            async def schedule(flow_id: str) -> None:
                await log.schedule_flow(flow_id, "Order", b"x")
                seen.append(",".join(flow_ids(path)))  # committed before the call returned

            await asyncio.gather(*(schedule(f"f{i}") for i in range(3)))
            return len(commits), seen
        finally:
            await log.close()

    assert run(body()) == (3, ["f0", "f0,f1", "f0,f1,f2"])


def test_a_command_failing_on_its_own_gets_its_error_and_the_rest_of_its_turn_commits(tmp_path):
    path = tmp_path / "store.db"

    async def body() -> tuple[list[object], int]:
        log = await SqliteExecutionLog(path, inline=True).connect()
        try:
            commits = await count_commits(log)
            results = await asyncio.gather(
                log.schedule_flow("a", "Order", b"x"),
                log.execute([ClaimFlows("w1", "r1", 1, 30.0, flow_id="missing")]),
                log.schedule_flow("b", "Order", b"x"), return_exceptions=True)
            return results, len(commits)
        finally:
            await log.close()

    results, commits = run(body())
    assert commits == 1
    assert results[0] == Scheduled("a", True) and results[2] == Scheduled("b", True)
    assert isinstance(results[1], list) and isinstance(results[1][0], FlowNotFoundError)
    assert flow_ids(path) == ["a", "b"]


def test_a_lock_held_elsewhere_fails_every_call_of_the_turn_as_unavailable(tmp_path):
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)

    async def body() -> list[object]:
        log = await SqliteExecutionLog(path, inline=True).connect()
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's write lock
            failed = await asyncio.gather(*(log.schedule_flow(f"f{i}", "Order", b"x") for i in range(3)),
                                          return_exceptions=True)
            holder.execute("ROLLBACK")
            await asyncio.gather(*(log.schedule_flow(f"f{i}", "Order", b"x") for i in range(3)))
            return failed
        finally:
            await log.close()

    try:
        failed = run(body())
    finally:
        holder.close()
    assert [type(e) for e in failed] == [StoreUnavailableError] * 3
    assert flow_ids(path) == ["f0", "f1", "f2"]


def test_close_commits_the_calls_of_its_turn_first(tmp_path):
    path = tmp_path / "store.db"

    async def body() -> Scheduled:
        log = await SqliteExecutionLog(path, inline=True).connect()
        call = asyncio.get_running_loop().create_task(log.schedule_flow("a", "Order", b"x"))
        await asyncio.sleep(0)  # the call is made; its transaction would run at the next turn
        assert not call.done()
        await log.close()
        return await call

    assert run(body()) == Scheduled("a", True)
    assert flow_ids(path) == ["a"]


@dataclass
@flow_type
class Three:
    n: int

    @step
    async def work(self, i: int) -> int:
        return self.n + i

    @flow
    async def run(self) -> int:
        total = 0
        for i in range(3):
            total += await self.work(i)
        return total


def test_flows_running_together_in_one_worker_share_their_commits(tmp_path):
    """100 flows of 3 steps send at least 500 commands of their own; one commit each would
    be 500 commits. Each round of their steps shares one."""
    flows = 100

    async def body() -> tuple[int, list[object]]:
        log = await SqliteExecutionLog(tmp_path / "store.db", synchronous="NORMAL", inline=True).connect()
        try:
            ids = [await Scheduler(log).schedule(Three(i)) for i in range(flows)]
            commits = await count_commits(log)
            worker = Worker(log, "w1", concurrency=flows)
            await worker.register(Three)
            handle = await worker.start()
            try:
                async def all_done() -> bool:
                    return (await log.count_flows()).get(FlowStatus.COMPLETE, 0) == flows
                await wait_until_async(all_done, timeout=30, what="every flow complete")
            finally:
                await handle.shutdown(grace=5.0)
            return len(commits), [(await log.get_flow(i)).value for i in ids]  # type: ignore[union-attr]
        finally:
            await log.close()

    commits, values = run(body())
    assert values == [3 * i + 3 for i in range(flows)]
    assert commits < 50, commits
