"""SQLite store faults: a full disk or a locked file is StoreUnavailableError with SQLite's own
words, nothing of the failed transaction is applied, and the same store works once the cause is
gone; a command's own bad content fails only that command."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ergon_actors.core import FlowStatus, StepRecord
from ergon_actors.errors import InvalidCommandError, StoreUnavailableError
from ergon_actors.storage import SqliteExecutionLog
from ergon_actors.storage.commands import AppendStep, AwaitSignal, GetFlow, ScheduleFlow

pytestmark = pytest.mark.timeout(60)

LEASE = 30.0


def step(position: int, result: bytes = b"r", name: str = "charge") -> StepRecord:
    return StepRecord(position, name, 1000 + position, result=result)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test alone (needs root, as CI has), unmounted at teardown."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                              capture_output=True, text=True, timeout=30, check=False)
        reason = done.stderr.strip() if done.returncode else None
    except OSError as exc:
        reason = str(exc)
    if reason is not None:
        pytest.fail(f"cannot mount a tmpfs at {mount_point}: {reason}. This test fills a disk: run it "
                    "as root, as CI does", pytrace=False)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, capture_output=True, timeout=30)


def fill(path: Path) -> None:
    """Write `path` until the file system has no byte left (ENOSPC), leaving the file there."""
    with open(path, "wb", buffering=0) as ballast:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    ballast.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break


async def integrity(log: SqliteExecutionLog) -> list[tuple[str]]:
    return await log._run(lambda db: db.execute("PRAGMA integrity_check").fetchall())


def test_a_full_disk_is_store_unavailable_and_the_same_store_commits_once_freed(small_disk):
    path, ballast = small_disk / "store.db", small_disk / "ballast"

    async def body():
        log = await SqliteExecutionLog(path).connect()
        try:
            for i in range(10):
                await log.schedule_flow(f"f{i}", "Order", b"args")
            (claim,) = await log.claim("w1", 1, LEASE, flow_id="f0")
            epoch = claim.flow.epoch
            await log.append_step("f0", epoch, step(0, b"paid"))
            acknowledged = (await log.list_flows(), await log.load_steps("f0"))

            fill(ballast)
            batch = [ScheduleFlow("big", "Order", b"x" * 300_000), AppendStep("f0", epoch, step(1)),
                     ScheduleFlow("small", "Order", b"y")]
            for _ in range(2):  # the same failure each time: no transaction is left half open
                with pytest.raises(StoreUnavailableError) as info:
                    await log.execute(batch)
                assert "full" in str(info.value) and "rollback" not in str(info.value)
                assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            # callers sharing one transaction all get the error
            together = await asyncio.gather(log.execute(batch[:1]), log.execute(batch[2:]),
                                            return_exceptions=True)
            assert all(isinstance(r, StoreUnavailableError) for r in together), together
            assert (await log.list_flows(), await log.load_steps("f0")) == acknowledged  # nothing applied
            assert await integrity(log) == [("ok",)]

            ballast.unlink()
            results = await log.execute(batch)
            assert [r.created for r in (results[0], results[2])] == [True, True] and results[1] is None
            flows = {f.flow_id: f for f in await log.list_flows()}
            assert {f.flow_id: f for f in acknowledged[0]}.items() <= flows.items()
            assert set(flows) == {f"f{i}" for i in range(10)} | {"big", "small"}
            steps = await log.load_steps("f0")
            assert steps[0] == acknowledged[1][0] and [s.position for s in steps] == [0, 1]
            assert await integrity(log) == [("ok",)]
        finally:
            await log.close()

        log = await SqliteExecutionLog(path).connect()  # and all of it is in the file
        try:
            assert len(await log.list_flows()) == 12 and len(await log.load_steps("f0")) == 2
            assert await integrity(log) == [("ok",)]
        finally:
            await log.close()

    asyncio.run(body())


def test_connect_on_a_full_disk_is_store_unavailable_and_works_once_freed(small_disk):
    path, ballast = small_disk / "new.db", small_disk / "ballast"

    async def body():
        fill(ballast)
        log = SqliteExecutionLog(path)
        with pytest.raises(StoreUnavailableError, match="full"):
            await log.connect()
        ballast.unlink()
        await log.connect()  # the same object
        try:
            assert (await log.schedule_flow("a", "Order", b"x")).created
        finally:
            await log.close()

    asyncio.run(body())


def test_a_locked_file_is_store_unavailable_and_works_once_released(tmp_path):
    path = tmp_path / "store.db"

    async def body():
        log = await SqliteExecutionLog(path).connect()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            await log.schedule_flow("a", "Order", b"x")
            await log._run(lambda db: db.execute("PRAGMA busy_timeout = 100"))  # fail fast here
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailableError, match="locked"):
                await log.schedule_flow("b", "Order", b"x")
            other.execute("ROLLBACK")
            assert (await log.schedule_flow("b", "Order", b"x")).created
            assert [f.flow_id for f in await log.list_flows()] == ["a", "b"]
        finally:
            other.close()
            await log.close()

    asyncio.run(body())


def test_a_command_failing_after_it_wrote_leaves_nothing_and_the_rest_commits(tmp_path):
    async def body():
        log = await SqliteExecutionLog(tmp_path / "store.db").connect()
        try:
            await log.schedule_flow("a", "Order", b"x")
            (claim,) = await log.claim("w1", 1, LEASE, flow_id="a")
            epoch = claim.flow.epoch
            await log.send_signal("go", b"payload")
            # takes the signal, then cannot journal a step whose name is a list
            bad = AwaitSignal("a", epoch, step(0, name=["not", "a", "name"]), "go")
            results = await log.execute([ScheduleFlow("b", "Order", b"x"), bad, GetFlow("b")])
            assert isinstance(results[1], InvalidCommandError) and results[1].command == "AwaitSignal"
            assert results[0].created and results[2].status == FlowStatus.PENDING
            assert await log.load_steps("a") == []
            taken = await log.await_signal("a", epoch, step(0), "go")  # still there to take
            assert taken is not None and taken.result == b"payload"
        finally:
            await log.close()

    asyncio.run(body())
