"""What only the SQLite store promises: a durable file, WAL, and refusing files that are not ours."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ergon_actors.core import FlowStatus, StepRecord
from ergon_actors.errors import ConfigError, SchemaVersionError, StoreError, StoreUnavailableError
from ergon_actors.storage import InMemoryExecutionLog, SqliteExecutionLog, open_store
from ergon_actors.storage.commands import ClaimFlows
from ergon_actors.storage.sqlite import INLINE_BUSY_MS
from ergon_actors.storage.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION
from ergon_actors.storage.sqlite_thread import ConnectionThread

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def run(coro):
    return asyncio.run(coro)


def raw(path: Path, sql: str, *params: object) -> list[tuple]:
    """One statement on a plain sqlite3 connection, committed, connection closed."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(sql, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def snapshot(path: Path) -> bytes:
    return path.read_bytes()


def connect_refused(path: Path) -> None:
    """Connect, expecting a refusal; a store that opens anyway is closed so nothing leaks."""
    async def attempt():
        log = await SqliteExecutionLog(path).connect()
        await log.close()
        pytest.fail(f"{path.name} was opened as a store")

    run(attempt())


def test_data_persists_across_close_and_reopen(tmp_path):
    path = tmp_path / "store.db"

    async def write():
        log = await SqliteExecutionLog(path).connect()
        try:
            await log.schedule_flow("a", "Order", b"args", version="v1")
            await log.schedule_flow("b", "Order", b"args-b")
            (claim,) = await log.execute([ClaimFlows("w1", "req-1", 1, 30.0, flow_id="a")])
            epoch = claim[0].flow.epoch
            await log.append_step("a", epoch, StepRecord(0, "charge", 42, result=b"paid"))
            await log.finish_flow("a", epoch, FlowStatus.COMPLETE, result=b"done")
            return await log.get_flow("a"), await log.load_steps("a"), await log.get_flow("b")
        finally:
            await log.close()

    async def read():
        log = await SqliteExecutionLog(path).connect()
        try:
            return await log.get_flow("a"), await log.load_steps("a"), await log.get_flow("b")
        finally:
            await log.close()

    written = run(write())
    assert written[0].status == FlowStatus.COMPLETE and written[1][0].result == b"paid"
    assert run(read()) == written


def test_wal_journal_mode_is_on(tmp_path):
    path = tmp_path / "store.db"

    async def open_and_close():
        log = await SqliteExecutionLog(path).connect()
        await log.schedule_flow("a", "Order", b"x")
        await log.close()

    run(open_and_close())
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("setting, level", [("FULL", 2), ("NORMAL", 1), ("normal", 1), ("EXTRA", 3), ("OFF", 0)])
def test_synchronous_setting_is_applied(tmp_path, setting, level):
    async def body():
        log = await SqliteExecutionLog(tmp_path / "store.db", synchronous=setting).connect()
        try:
            return await log._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            await log.close()

    assert run(body()) == level


def test_synchronous_defaults_to_full(tmp_path):
    async def body():
        log = await SqliteExecutionLog(tmp_path / "store.db").connect()
        try:
            return await log._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            await log.close()

    assert run(body()) == 2


def test_invalid_synchronous_is_a_config_error(tmp_path):
    path = tmp_path / "store.db"
    with pytest.raises(ConfigError, match="synchronous"):
        SqliteExecutionLog(path, synchronous="SOMETIMES")
    with pytest.raises(ConfigError, match="synchronous"):
        run(open_store(f"sqlite:///{path}", synchronous="fast"))
    assert not path.exists()


def test_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "app.db"
    raw(path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    raw(path, "INSERT INTO users (name) VALUES ('ada')")
    before = snapshot(path)
    with pytest.raises(StoreError, match="another application"):
        connect_refused(path)
    assert snapshot(path) == before
    assert raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("users",)]
    assert raw(path, "PRAGMA journal_mode") == [("delete",)]


def test_non_database_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for\n" * 50 + os.urandom(2048))
    before = snapshot(path)
    with pytest.raises(StoreError):
        connect_refused(path)
    assert snapshot(path) == before


def test_newer_schema_version_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "store.db"

    async def create():
        log = await SqliteExecutionLog(path).connect()
        await log.schedule_flow("a", "Order", b"x")
        await log.close()

    run(create())
    raw(path, "UPDATE ergon_meta SET value = '99' WHERE key = 'schema_version'")
    before = snapshot(path)
    with pytest.raises(SchemaVersionError) as info:
        connect_refused(path)
    assert info.value.found == 99
    assert info.value.supported == SCHEMA_VERSION
    assert isinstance(info.value, StoreError)
    assert snapshot(path) == before
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'schema_version'") == [("99",)]
    assert raw(path, "SELECT flow_id, status FROM flows") == [("a", "PENDING")]


def version_1_file(path: Path) -> Path:
    """A store file as schema version 1 wrote it (tests/storage/data/schema_v1.sql)."""
    db = sqlite3.connect(path)
    try:
        db.executescript((Path(__file__).parent / "data" / "schema_v1.sql").read_text())
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    finally:
        db.close()
    return path


def schema(path: Path) -> list[tuple]:
    """Every table's columns and every index's definition, as a new and an upgraded file share them."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        columns = [(t, *c) for t in tables for c in db.execute(f"PRAGMA table_info({t})")]
        indexes = [(t, i[1], i[2], i[4], [c[2] for c in db.execute(f"PRAGMA index_info({i[1]})")])
                   for t in tables for i in db.execute(f"PRAGMA index_list({t})")]
        partial = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%'")
        return sorted(columns) + sorted(indexes) + sorted(partial)
    finally:
        db.close()


async def create(path: Path) -> None:
    log = await SqliteExecutionLog(path).connect()
    await log.close()


def test_a_file_of_schema_version_1_is_upgraded_in_place_and_keeps_its_flows(tmp_path):
    path = version_1_file(tmp_path / "old.db")

    async def use() -> None:
        log = await SqliteExecutionLog(path).connect()
        try:
            flows = {f.flow_id: f for f in await log.list_flows()}
            assert {i: f.status for i, f in flows.items()} == {
                "pending": "PENDING", "running": "RUNNING", "failed": "FAILED", "parent": "SUSPENDED",
                "parent/0": "PENDING"}
            assert all(f.crashes == () and not f.suspect for f in flows.values())
            assert flows["failed"].error.message == "bad" and not flows["failed"].quarantined
            assert [s.name for s in await log.load_steps("running")] == ["reserve"]
            (crashed,) = await log.record_crash("old-worker", None, 9, "signal", 3)
            assert (crashed.crashes[0].position, crashed.crashes[0].alone, crashed.suspect) == (1, True, True)
            assert await log.send_signal("go", b"again") is False
            (kid,) = await log.claim("w", 10, 30.0, flow_types=("Kid",))
            await log.finish_flow("parent/0", kid.flow.epoch, FlowStatus.COMPLETE, result=b"k")
            assert (await log.get_flow("parent")).ready_at is not None  # the child's end woke it
        finally:
            await log.close()

    run(use())
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    run(create(tmp_path / "new.db"))
    assert schema(path) == schema(tmp_path / "new.db")


OPEN_WHEN_TOLD = """
import asyncio, os, sys, time
from ergon_actors.storage import SqliteExecutionLog

async def main() -> None:
    open(f"{sys.argv[2]}.{os.getpid()}", "w").close()  # ready
    while not os.path.exists(sys.argv[2]):  # every process opens the new file at the same moment
        time.sleep(0.001)
    store = await SqliteExecutionLog(sys.argv[1]).connect()
    await store.schedule_flow(f"flow-{os.getpid()}", "T", b"")
    await store.close()

asyncio.run(main())
"""


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path):
    path, go = tmp_path / "new.db", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, str(path), str(go)],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    try:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("go.*"))) < len(procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        errors = [p.communicate(timeout=30)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert raw(path, "SELECT count(*) FROM flows") == [(6,)]


def test_an_upgrade_that_fails_leaves_the_file_at_its_version(tmp_path):
    path = version_1_file(tmp_path / "old.db")
    raw(path, "CREATE TABLE blocker (x)")
    raw(path, "CREATE INDEX flows_suspect ON blocker (x)")  # the upgrade's index name is taken
    before = schema(path)
    with pytest.raises(StoreError):
        connect_refused(path)
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'schema_version'") == [("1",)]
    assert schema(path) == before


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://", "redis://"])
def test_open_store_rejects_bad_urls_naming_them(url):
    with pytest.raises(ConfigError) as info:
        run(open_store(url))
    assert repr(url) in str(info.value)


def test_open_store_opens_sqlite_and_memory_urls(tmp_path):
    path = tmp_path / "via-url.db"

    async def body():
        log = await open_store(f"sqlite:///{path}", synchronous="NORMAL")
        try:
            assert isinstance(log, SqliteExecutionLog)
            await log.schedule_flow("a", "Order", b"x")
            level = await log._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            await log.close()
        memory = await open_store("memory://")
        assert isinstance(memory, InMemoryExecutionLog)
        return level

    assert run(body()) == 1
    assert raw(path, "SELECT flow_id FROM flows") == [("a",)]


def test_in_memory_sqlite_store_works():
    async def body():
        log = await SqliteExecutionLog.in_memory()
        try:
            assert (await log.schedule_flow("a", "Order", b"x")).created
            (claim,) = await log.claim("w1", 10, 30.0)
            await log.finish_flow("a", claim.flow.epoch, FlowStatus.COMPLETE, result=b"ok")
            return await log.get_flow("a")
        finally:
            await log.close()

    flow = run(body())
    assert (flow.status, flow.result) == (FlowStatus.COMPLETE, b"ok")


def test_using_a_store_before_connect_is_a_store_error(tmp_path):
    log = SqliteExecutionLog(tmp_path / "store.db")
    with pytest.raises(StoreError, match="connect"):
        run(log.get_flow("a"))


def test_resent_claim_is_answered_again_after_reopen(tmp_path):
    path = tmp_path / "store.db"
    command = ClaimFlows("w1", "req-1", 1, 30.0)

    async def first():
        log = await SqliteExecutionLog(path).connect()
        try:
            await log.schedule_flow("a", "Order", b"x")
            await log.schedule_flow("b", "Order", b"x")
            (claims,) = await log.execute([command])
            return claims
        finally:
            await log.close()

    async def again():
        log = await SqliteExecutionLog(path).connect()
        try:
            (claims,) = await log.execute([command])
            return claims, await log.get_flow("b")
        finally:
            await log.close()

    claims = run(first())
    resent, b = run(again())
    assert [c.flow for c in resent] == [c.flow for c in claims]
    assert b.status == FlowStatus.PENDING


def test_two_connections_to_one_file_never_claim_the_same_flow(tmp_path):
    path = tmp_path / "store.db"

    async def body():
        one = await SqliteExecutionLog(path).connect()
        two = await SqliteExecutionLog(path).connect()
        try:
            for i in range(20):
                await one.schedule_flow(f"f{i}", "Order", b"x")
            deadline = time.monotonic() + 30
            claimed: list[str] = []
            while len(claimed) < 20 and time.monotonic() < deadline:
                batches = await asyncio.gather(*(log.claim(f"w{i}", 3, 30.0)
                                                 for i, log in enumerate([one, two, one, two])))
                claimed += [c.flow.flow_id for batch in batches for c in batch]
            return claimed
        finally:
            await one.close()
            await two.close()

    claimed = run(body())
    assert sorted(claimed) == sorted(f"f{i}" for i in range(20))


def test_a_missing_folder_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def body():
        for path in ("data/x.db", tmp_path / "deep" / "er" / "y.db"):
            log = await SqliteExecutionLog(path).connect()
            try:
                await log.schedule_flow("a", "Order", b"x")
            finally:
                await log.close()

    run(body())
    assert raw(tmp_path / "data" / "x.db", "SELECT flow_id FROM flows") == [("a",)]
    assert raw(tmp_path / "deep" / "er" / "y.db", "SELECT flow_id FROM flows") == [("a",)]


def test_a_folder_that_cannot_be_created_is_a_store_error_naming_the_path(tmp_path):
    (tmp_path / "data").write_text("a file where the folder should be")
    path = tmp_path / "data" / "x.db"
    with pytest.raises(StoreError, match="folder") as info:
        run(SqliteExecutionLog(path).connect())
    assert str(path) in str(info.value)


def test_repr_names_the_store_its_file_and_whether_it_is_connected(tmp_path):
    path = tmp_path / "store.db"

    async def body():
        log = SqliteExecutionLog(path, synchronous="normal")
        assert repr(log) == f"SqliteExecutionLog({str(path)!r}, synchronous='NORMAL', connected=False)"
        await log.connect()
        try:
            assert repr(log) == f"SqliteExecutionLog({str(path)!r}, synchronous='NORMAL', connected=True)"
        finally:
            await log.close()
        assert repr(log).endswith("connected=False)")
        memory = await SqliteExecutionLog.in_memory()
        try:
            assert repr(memory) == "SqliteExecutionLog(in-memory, synchronous='FULL', connected=True)"
        finally:
            await memory.close()
        plain = InMemoryExecutionLog()
        await plain.schedule_flow("a", "Order", b"x")
        assert (repr(plain), str(plain)) == ("InMemoryExecutionLog(flows=1)", "InMemoryExecutionLog")

    run(body())


EXIT_SCRIPT = """
import asyncio, sys
from ergon_actors.storage import SqliteExecutionLog

async def main(path, ending):
    log = await SqliteExecutionLog(path).connect()
    await log.schedule_flow("written", "Order", b"x")
    if ending == "raise":
        raise RuntimeError("the script failed with its store open")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("ending, exit_code", [("raise", 1), ("return", 0)])
def test_a_script_ending_with_its_store_open_exits_promptly(tmp_path, ending, exit_code):
    path = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT, str(path), ending], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"a script that {ending}s with its SQLite store open did not exit within 15 s")
    assert proc.returncode == exit_code, err
    assert ("the script failed" in err) == (ending == "raise")
    assert raw(path, "SELECT flow_id FROM flows") == [("written",)]


def store_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"ergon-sqlite {path}"]


def test_a_store_dropped_without_close_ends_its_thread(tmp_path):
    path = tmp_path / "store.db"

    async def open_and_drop():
        log = await SqliteExecutionLog(path).connect()
        await log.schedule_flow("a", "Order", b"x")
        assert len(store_threads(path)) == 1

    run(open_and_drop())
    gc.collect()
    deadline = time.monotonic() + 10
    while store_threads(path):
        assert time.monotonic() < deadline, "the connection thread of a dropped store is still running"
        time.sleep(0.01)
    assert raw(path, "SELECT flow_id FROM flows") == [("a",)]


def test_close_finishes_the_work_queued_before_it(tmp_path):
    path = tmp_path / "store.db"
    raw(path, "CREATE TABLE t (n INTEGER)")

    async def body():
        conn = ConnectionThread(str(path))
        def insert(n: int) -> Callable[[sqlite3.Connection], int]:
            return lambda db: db.execute("INSERT INTO t VALUES (?)", (n,)).rowcount

        calls = [asyncio.create_task(conn.run(insert(n))) for n in range(50)]
        await asyncio.sleep(0)  # every call is queued on the thread
        await conn.close()
        assert all(call.done() for call in calls)
        return [call.result() for call in calls]

    assert run(body()) == [1] * 50
    assert raw(path, "SELECT count(*) FROM t") == [(50,)]
    assert not store_threads(path)


def test_an_upgraded_file_keeps_a_history_from_then_on(tmp_path):
    path = version_1_file(tmp_path / "old.db")

    async def use() -> list[str]:
        log = await SqliteExecutionLog(path).connect()
        try:
            (claim,) = await log.claim("w1", 1, 30.0, flow_id="pending")
            await log.finish_flow("pending", claim.flow.epoch, FlowStatus.COMPLETE, result=b"r")
            return [e.kind for e in await log.load_history("pending")]
        finally:
            await log.close()

    assert run(use()) == ["claimed", "completed"]  # what happened before the upgrade has no events


def test_an_inline_store_commits_on_the_calling_thread_and_starts_none(tmp_path):
    path = tmp_path / "store.db"
    seen: list[int] = []

    async def body():
        log = await SqliteExecutionLog(path, inline=True).connect()
        try:
            await log.schedule_flow("a", "Order", b"x")
            await log._run(lambda db: seen.append(threading.get_ident()))
            assert not store_threads(path)
            assert "connected=True" in repr(log)
        finally:
            await log.close()

    run(body())
    assert seen == [threading.get_ident()]
    assert raw(path, "SELECT flow_id FROM flows") == [("a",)]


def test_an_inline_store_reports_a_lock_held_elsewhere_as_unavailable_without_waiting_10s(tmp_path):
    """The journal's loop must not block for the default 10 s busy timeout: the store fails the
    batch as unavailable after INLINE_BUSY_MS, and the journal retries it with backoff."""
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)

    async def body():
        log = await SqliteExecutionLog(path, inline=True).connect()
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's write lock
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="locked"):
                await log.schedule_flow("a", "Order", b"x")
            blocked = time.monotonic() - started
            holder.execute("ROLLBACK")
            await log.schedule_flow("a", "Order", b"x")  # the same batch, once the lock is gone
            return blocked
        finally:
            await log.close()

    try:
        blocked = run(body())
    finally:
        holder.close()
    assert INLINE_BUSY_MS / 1000 * 0.9 <= blocked < 8.0
    assert raw(path, "SELECT flow_id FROM flows") == [("a",)]
